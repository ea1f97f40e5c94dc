package main

import (
	"io"

	"github.com/penstock-dev/penstock/internal/demo"
)

// runDemoFunction runs the demo function. penstock's function runtime
// starts it (the demo config's "tokenize" function) with the Lambda
// Runtime API's address in AWS_LAMBDA_RUNTIME_API; run by hand, it exits
// saying that variable is missing.
func runDemoFunction(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("demo-function", "demo-function", stderr)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	demo.RunFunction()
	return nil
}
