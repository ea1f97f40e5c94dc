package main

import (
	"errors"
	"io"
)

func runBenchRun(args []string, stdout, stderr io.Writer) error {
	return errors.New("not built yet")
}
