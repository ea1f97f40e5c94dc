package config

import (
	"errors"
	"os"
	"path/filepath"
	"testing"
)

// FuzzParse checks that no input makes Parse or Validate panic, and that
// every failure is reported as Errors with at least one message. Seeds are
// the examples under testdata and the corpus in testdata/fuzz/FuzzParse.
func FuzzParse(f *testing.F) {
	files, err := filepath.Glob("testdata/*.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, name := range files {
		data, err := os.ReadFile(name)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		// Check validates even a partly decoded Config: it must not panic
		// on one either; a Config that decoded is validated here.
		if cfg, err := Check(data, "fuzz.yaml"); err != nil {
			checkErrors(t, err)
		} else if err := cfg.Validate(); err != nil {
			checkErrors(t, err)
		}
		cfg, err := Parse(data, "fuzz.yaml")
		if err != nil {
			if cfg != nil {
				t.Fatal("Parse returned a Config along with an error")
			}
			checkErrors(t, err)
			return
		}
		if err := cfg.Validate(); err != nil {
			checkErrors(t, err)
		}
	})
}

func checkErrors(t *testing.T, err error) {
	t.Helper()
	var es Errors
	if !errors.As(err, &es) || len(es) == 0 {
		t.Fatalf("error %T %q is not a non-empty Errors", err, err)
	}
	for _, e := range es {
		if e.Msg == "" || e.File != "fuzz.yaml" || e.Line < 0 {
			t.Fatalf("malformed FieldError %+v", e)
		}
	}
}
