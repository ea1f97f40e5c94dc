package demo

import (
	_ "embed"
)

// Config is the embedded demo configuration (`penstock config demo` prints
// it). Its "models" upstream points at the demo backend's address,
// BackendAddress.
//
//go:embed demo.yaml
var Config []byte

// BackendAddress is where `penstock serve` without a config starts the demo
// backend, and what the demo config's "models" upstream points at.
const BackendAddress = "127.0.0.1:9100"
