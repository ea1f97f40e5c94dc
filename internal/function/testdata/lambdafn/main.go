// Command lambdafn is a test function built with the official
// aws-lambda-go runtime client. What it does depends on the request path.
package main

import (
	"context"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

func handle(ctx context.Context, req events.LambdaFunctionURLRequest) (any, error) {
	lc, _ := lambdacontext.FromContext(ctx)
	deadline, _ := ctx.Deadline()
	switch req.RawPath {
	case "/stream":
		pr, pw := io.Pipe()
		go func() {
			for i := range 5 {
				fmt.Fprintf(pw, "chunk %d\n", i)
				time.Sleep(20 * time.Millisecond)
			}
			pw.Close()
		}()
		return &events.LambdaFunctionURLStreamingResponse{StatusCode: 201,
			Headers: map[string]string{"Content-Type": "text/plain", "X-Streamed": "yes"}, Body: pr}, nil
	case "/crash":
		fmt.Fprintln(os.Stderr, "about to crash on purpose")
		os.Exit(3)
	case "/hang":
		<-make(chan struct{})
	case "/flood":
		line := strings.Repeat("x", 1023) + "\n"
		for range 10 << 10 {
			os.Stdout.WriteString(line)
		}
	case "/malformed":
		return map[string]any{"statusCode": "teapot"}, nil
	case "/error":
		return nil, errors.New("boom")
	case "/sleep":
		ms, _ := strconv.Atoi(req.QueryStringParameters["ms"])
		time.Sleep(time.Duration(ms) * time.Millisecond)
	case "/binary":
		body, _ := base64.StdEncoding.DecodeString(req.Body)
		if !req.IsBase64Encoded {
			body = []byte(req.Body)
		}
		for i := range body {
			body[i] ^= 0xff
		}
		return events.LambdaFunctionURLResponse{StatusCode: 200,
			Headers: map[string]string{"Content-Type": "application/octet-stream"},
			Body:    base64.StdEncoding.EncodeToString(body), IsBase64Encoded: true}, nil
	}
	body := fmt.Sprintf("method=%s path=%s query=%s body=%s user-agent=%s cookies=%s param=%s pid=%d id=%s arn=%s deadline_ok=%v",
		req.RequestContext.HTTP.Method, req.RawPath, req.RawQueryString, req.Body,
		req.Headers["user-agent"], strings.Join(req.Cookies, "|"), os.Getenv("GREETING"), os.Getpid(),
		lc.AwsRequestID, lc.InvokedFunctionArn, time.Until(deadline) > 0)
	return events.LambdaFunctionURLResponse{StatusCode: http.StatusOK,
		Headers: map[string]string{"Content-Type": "text/plain", "X-Fn": "hello"},
		Cookies: []string{"a=1; Path=/", "b=2"}, Body: body}, nil
}

func main() {
	switch os.Getenv("FAIL_INIT") {
	case "exit-quietly": // the process's own start time, for the benchmarks
		os.Exit(0)
	case "exit":
		fmt.Fprintln(os.Stderr, "cannot start: missing model file")
		os.Exit(1)
	case "report":
		url := "http://" + os.Getenv("AWS_LAMBDA_RUNTIME_API") + "/2018-06-01/runtime/init/error"
		resp, err := http.Post(url, "application/json", strings.NewReader(`{"errorMessage":"missing model file","errorType":"Runtime.InitError"}`))
		if err == nil {
			resp.Body.Close()
		}
		os.Exit(1)
	}
	lambda.Start(handle)
}
