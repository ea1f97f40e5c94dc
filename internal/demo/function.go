package demo

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"strings"
	"time"

	"github.com/aws/aws-lambda-go/events"
	"github.com/aws/aws-lambda-go/lambda"
	"github.com/aws/aws-lambda-go/lambdacontext"
)

// RunFunction runs the demo function: a tokenizer of the kind teams put
// next to their models, written with the official aws-lambda-go runtime
// client and started by penstock's function runtime, which serves it the
// Lambda Runtime API (`penstock demo-function`, the demo config's
// "tokenize" function). It never returns.
func RunFunction() {
	started := time.Now()
	lambda.Start(func(ctx context.Context, req events.LambdaFunctionURLRequest) (any, error) {
		return tokenize(ctx, req, started)
	})
}

// tokenize splits the request's text ({"text": "..."} or the query's
// text=) on white space. With stream=1 it streams one token per line.
func tokenize(ctx context.Context, req events.LambdaFunctionURLRequest, started time.Time) (any, error) {
	text := req.QueryStringParameters["text"]
	if req.Body != "" {
		var in struct {
			Text string `json:"text"`
		}
		if err := json.Unmarshal([]byte(req.Body), &in); err != nil {
			return events.LambdaFunctionURLResponse{StatusCode: 400,
				Headers: map[string]string{"Content-Type": "application/json"},
				Body:    `{"error":"want {\"text\": \"...\"}"}`}, nil
		}
		text = in.Text
	}
	tokens := strings.Fields(text)
	if req.QueryStringParameters["stream"] == "1" {
		pr, pw := io.Pipe()
		go func() {
			for _, tok := range tokens {
				fmt.Fprintln(pw, tok)
				time.Sleep(100 * time.Millisecond)
			}
			pw.Close()
		}()
		return &events.LambdaFunctionURLStreamingResponse{StatusCode: 200,
			Headers: map[string]string{"Content-Type": "text/plain"}, Body: pr}, nil
	}
	lc, _ := lambdacontext.FromContext(ctx)
	out, _ := json.Marshal(map[string]any{
		"tokens":     tokens,
		"count":      len(tokens),
		"request_id": lc.AwsRequestID,
		"pid":        os.Getpid(),
		"warm_for":   time.Since(started).Round(time.Millisecond).String(),
	})
	return events.LambdaFunctionURLResponse{StatusCode: 200,
		Headers: map[string]string{"Content-Type": "application/json"}, Body: string(out) + "\n"}, nil
}
