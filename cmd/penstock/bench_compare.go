package main

import (
	"errors"
	"io"
)

func runBenchCompare(args []string, stdout, stderr io.Writer) error {
	return errors.New("not built yet")
}

func runBenchReport(args []string, stdout, stderr io.Writer) error {
	return errors.New("not built yet")
}
