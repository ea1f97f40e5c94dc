// The page of TestGRPCWebInChromium: grpc-web, the gRPC-Web client library
// of the gRPC project, calls grpc.testing.TestService through penstock in
// both of its wire formats, and the page writes what the library reported
// (messages, header and trailing metadata, statuses) as JSON into
// #result, for the test to read and judge.
//
// The messages are encoded and decoded by hand below: the few fields of
// grpc.testing's messages (grpc-go's interop/grpc_testing/messages.proto)
// that the test uses.

import { GrpcWebClientBase, MethodDescriptor, MethodType } from "grpc-web";

// --- protobuf wire format (varints and length-delimited fields only) ---

function varint(out, n) {
  while (n > 0x7f) {
    out.push((n & 0x7f) | 0x80);
    n = Math.floor(n / 128);
  }
  out.push(n);
}

function field(out, num, value) {
  if (typeof value === "number") {
    varint(out, (num << 3) | 0);
    varint(out, value);
    return;
  }
  varint(out, (num << 3) | 2);
  varint(out, value.length);
  for (const b of value) out.push(b);
}

const utf8 = (s) => Array.from(new TextEncoder().encode(s));

// fields decodes one message level: field number to a list of values
// (numbers for varints, Uint8Arrays for length-delimited fields).
function fields(bytes) {
  const got = {};
  let i = 0;
  const readVarint = () => {
    let n = 0;
    let mul = 1;
    for (;;) {
      const b = bytes[i++];
      if (b === undefined) throw new Error("message cut short");
      n += (b & 0x7f) * mul;
      if (b < 0x80) return n;
      mul *= 128;
    }
  };
  while (i < bytes.length) {
    const key = readVarint();
    const num = key >>> 3;
    let value;
    switch (key & 7) {
      case 0:
        value = readVarint();
        break;
      case 2: {
        const len = readVarint();
        value = bytes.subarray(i, i + len);
        i += len;
        break;
      }
      default:
        throw new Error("wire type " + (key & 7) + " not expected");
    }
    (got[num] = got[num] || []).push(value);
  }
  return got;
}

// EchoStatus {code = 1; message = 2}
function echoStatus(code, message) {
  const out = [];
  field(out, 1, code);
  field(out, 2, utf8(message));
  return out;
}

// SimpleRequest {response_size = 2; payload = 3 (Payload {body = 2});
// response_status = 7}
function simpleRequest({ size = 0, body = "", status = null }) {
  const out = [];
  if (size) field(out, 2, size);
  if (body) {
    const payload = [];
    field(payload, 2, utf8(body));
    field(out, 3, payload);
  }
  if (status) field(out, 7, echoStatus(status.code, status.message));
  return Uint8Array.from(out);
}

// StreamingOutputCallRequest {response_parameters = 2 (ResponseParameters
// {size = 1}), repeated}
function streamingRequest(sizes) {
  const out = [];
  for (const size of sizes) {
    const p = [];
    field(p, 1, size);
    field(out, 2, p);
  }
  return Uint8Array.from(out);
}

// SimpleResponse and StreamingOutputCallResponse both hold payload = 1
// (Payload {body = 2}); the test looks at the body's length.
function payloadSize(bytes) {
  const payload = (fields(bytes)[1] || [])[0];
  if (!payload) return 0;
  const body = (fields(payload)[2] || [])[0];
  return body ? body.length : 0;
}

// --- calls ---

const service = "/grpc.testing.TestService/";
const unary = new MethodDescriptor(
  service + "UnaryCall",
  MethodType.UNARY,
  Object,
  Object,
  (req) => simpleRequest(req),
  (bytes) => ({ size: payloadSize(bytes) }),
);
const serverStream = new MethodDescriptor(
  service + "StreamingOutputCall",
  MethodType.SERVER_STREAMING,
  Object,
  Object,
  (sizes) => streamingRequest(sizes),
  (bytes) => ({ size: payloadSize(bytes) }),
);

// A call's deadline, far enough for a loaded machine; the library cancels
// the call itself when it passes.
const deadline = () => String(Date.now() + 30000);

// call runs one call and resolves with all the library reported: the
// messages, the response's header metadata, the final status with its
// trailing metadata, and the error if any. A unary call goes through
// rpcCall (its callback gives the message or the error), a server stream
// through serverStreaming (data, error and end events); both report
// metadata and status events.
function call(client, base, method, request) {
  return new Promise((resolve) => {
    const got = { messages: [], headers: null, status: null, error: null, end: false };
    let pending = 2; // the outcome, and the status event
    const settle = () => {
      if (--pending === 0) resolve(got);
    };
    // A library that never reports both ends the call after 40 s: the
    // test then shows what it did report.
    setTimeout(() => {
      got.unfinished = true;
      resolve(got);
    }, 40000);
    const fail = (err) => {
      got.error = { code: err.code, message: err.message, metadata: err.metadata || {} };
    };
    const md = { deadline: deadline(), "x-user": "browser" };
    let stream;
    if (method === unary) {
      stream = client.rpcCall(base + method.getName(), request, md, method, (err, resp) => {
        if (err) fail(err);
        else got.messages.push(resp.size);
        settle();
      });
    } else {
      stream = client.serverStreaming(base + method.getName(), request, md, method);
      stream.on("data", (m) => got.messages.push(m.size));
      stream.on("error", (err) => {
        fail(err);
        settle();
      });
      stream.on("end", () => {
        got.end = true;
        settle();
      });
    }
    stream.on("metadata", (h) => (got.headers = h));
    stream.on("status", (st) => {
      got.status = { code: st.code, details: st.details, metadata: st.metadata || {} };
      settle();
    });
  });
}

// unaryCall uses the promise interface, as most applications do: the
// response, or the RpcError with its code.
async function unaryCall(client, base, request) {
  try {
    const resp = await client.unaryCall(base + unary.getName(), request, { deadline: deadline() }, unary);
    return { size: resp.size, error: null };
  } catch (err) {
    return { size: null, error: { code: err.code, message: err.message } };
  }
}

async function run() {
  const origin = new URLSearchParams(location.search).get("target") || location.origin;
  const out = {};
  for (const format of ["text", "binary"]) {
    const client = new GrpcWebClientBase({ format });
    out[format] = {
      unary: await call(client, origin, unary, { size: 300 }),
      unaryPromise: await unaryCall(client, origin, { size: 70000 }),
      notFound: await call(client, origin, unary, { status: { code: 5, message: "no such model" } }),
      serverStream: await call(client, origin, serverStream, [10, 20, 30000]),
      // penstock's own refusal: the /down route's upstream is not there.
      unavailable: await call(client, origin + "/down", unary, {}),
    };
  }
  return out;
}

const result = document.getElementById("result");
run().then(
  (out) => {
    result.textContent = JSON.stringify(out);
    document.body.dataset.done = "ok";
  },
  (err) => {
    result.textContent = String(err && err.stack ? err.stack : err);
    document.body.dataset.done = "failed";
  },
);
