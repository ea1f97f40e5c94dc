// The dashboard's data stream: Server-Sent Events read with fetch, so the
// admin token can travel in an Authorization header (EventSource cannot
// send one). Reconnects with a growing delay.

export class Unauthorized extends Error {}

// follow calls onState with each parsed event until stop() is called.
// onStatus receives "live", "reconnecting" or "unauthorized".
export function follow(url, token, onState, onStatus) {
  const ctl = new AbortController();
  let stopped = false;
  let delay = 1000;
  (async () => {
    while (!stopped) {
      try {
        const headers = { Accept: "text/event-stream" };
        if (token) headers.Authorization = "Bearer " + token;
        const res = await fetch(url, { headers, signal: ctl.signal, cache: "no-store" });
        if (res.status === 401) {
          onStatus("unauthorized");
          return;
        }
        if (!res.ok || !res.body) throw new Error("HTTP " + res.status);
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = "";
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value;
          let end;
          while ((end = buf.indexOf("\n\n")) >= 0) {
            const event = buf.slice(0, end);
            buf = buf.slice(end + 2);
            const data = event.split("\n").filter((l) => l.startsWith("data:")).map((l) => l.slice(5).trimStart()).join("\n");
            if (!data) continue;
            delay = 1000;
            onStatus("live");
            onState(JSON.parse(data));
          }
        }
      } catch (err) {
        if (stopped) return;
      }
      if (stopped) return;
      onStatus("reconnecting");
      await new Promise((r) => setTimeout(r, delay));
      delay = Math.min(delay * 2, 15000);
    }
  })();
  return () => {
    stopped = true;
    ctl.abort();
  };
}
