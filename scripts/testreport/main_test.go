package main

import (
	"strings"
	"testing"
)

func TestReport(t *testing.T) {
	ev := func(action, pkg, test, output string) string {
		return `{"Action":"` + action + `","Package":"` + pkg + `","Test":"` + test + `","Output":` + quote(output) + "}\n"
	}
	tests := []struct {
		name    string
		in      string
		out     string
		skipped []skip
		failed  bool
	}{
		{
			name: "passing package: its ok line only",
			in: ev("run", "p", "TestA", "") + ev("output", "p", "TestA", "=== RUN   TestA\n") + ev("pass", "p", "TestA", "") +
				ev("output", "p", "", "PASS\n") + ev("output", "p", "", "ok  \tp\t0.1s\n") + ev("pass", "p", "", ""),
			out: "ok  \tp\t0.1s\n",
		},
		{
			name: "skipped tests are listed, not printed",
			in: ev("output", "p", "TestA", "    a_test.go:3: needs root\n") + ev("skip", "p", "TestA", "") +
				ev("skip", "p", "TestB/sub", "") + ev("pass", "p", "TestB", "") +
				ev("output", "p", "", "ok  \tp\t0.1s\n") + ev("pass", "p", "", ""),
			out:     "ok  \tp\t0.1s\n",
			skipped: []skip{{"p", "TestA"}, {"p", "TestB/sub"}},
		},
		{
			name: "a failed test's output is printed whole",
			in: ev("output", "p", "TestA", "=== RUN   TestA\n") + ev("output", "p", "TestA", "    a_test.go:9: got 1, want 2\n") +
				ev("output", "p", "TestA", "--- FAIL: TestA (0.00s)\n") + ev("fail", "p", "TestA", "") +
				ev("output", "p", "", "FAIL\tp\t0.1s\n") + ev("fail", "p", "", ""),
			out:    "=== RUN   TestA\n    a_test.go:9: got 1, want 2\n--- FAIL: TestA (0.00s)\nFAIL\tp\t0.1s\n",
			failed: true,
		},
		{
			name: "a package that times out prints the output of the tests it cut short",
			in: ev("run", "p", "TestA", "") + ev("output", "p", "TestA", "=== RUN   TestA\n") + ev("pass", "p", "TestA", "") +
				ev("run", "p", "TestB", "") + ev("output", "p", "TestB", "=== RUN   TestB\n") +
				ev("output", "p", "TestB", "panic: test timed out after 10m0s\n") +
				ev("output", "p", "", "FAIL\tp\t600.1s\n") + ev("fail", "p", "", ""),
			out:    "--- UNFINISHED: TestB\n=== RUN   TestB\npanic: test timed out after 10m0s\nFAIL\tp\t600.1s\n",
			failed: true,
		},
		{
			name:   "build errors and lines that are not JSON pass through",
			in:     `{"ImportPath":"p [p.test]","Action":"build-output","Output":"p/a.go:3:1: syntax error\n"}` + "\n" + `{"ImportPath":"p [p.test]","Action":"build-fail"}` + "\n" + "go: warning\n",
			out:    "p/a.go:3:1: syntax error\ngo: warning\n",
			failed: true,
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var out strings.Builder
			res, err := report(strings.NewReader(tc.in), &out)
			if err != nil {
				t.Fatal(err)
			}
			if out.String() != tc.out {
				t.Errorf("output:\n%q\nwant:\n%q", out.String(), tc.out)
			}
			if res.failed != tc.failed {
				t.Errorf("failed = %v, want %v", res.failed, tc.failed)
			}
			if len(res.skipped) != len(tc.skipped) {
				t.Fatalf("skipped %v, want %v", res.skipped, tc.skipped)
			}
			for i := range tc.skipped {
				if res.skipped[i] != tc.skipped[i] {
					t.Errorf("skipped %v, want %v", res.skipped, tc.skipped)
				}
			}
		})
	}
}

func quote(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `"`, `\"`, "\n", `\n`, "\t", `\t`)
	return `"` + r.Replace(s) + `"`
}
