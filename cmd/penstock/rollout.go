package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"
)

// runRollout talks to a running penstock's admin API about its rollouts:
// list them, show one, or pause, resume, promote or abort one.
func runRollout(args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("rollout", "rollout [-admin URL] [-token-file F] list | show ROUTE | pause|resume|promote|abort ROUTE [REASON...]", stderr)
	admin := fs.String("admin", envOr("PENSTOCK_ADMIN", "http://127.0.0.1:9901"), "the admin API's base `URL` (or $PENSTOCK_ADMIN)")
	tokenFile := fs.String("token-file", "", "`file` holding the admin token for actions (default: $PENSTOCK_ADMIN_TOKEN)")
	asJSON := fs.Bool("json", false, "print the admin API's JSON as it is")
	timeout := fs.Duration("timeout", 10*time.Second, "bound on the call")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return errUsage
	}
	rest := fs.Args()
	if len(rest) == 0 {
		fmt.Fprintln(stderr, "penstock rollout: name a subcommand: list, show, pause, resume, promote or abort")
		fs.Usage()
		return errUsage
	}
	base := strings.TrimRight(*admin, "/")
	client := &http.Client{Timeout: *timeout}
	switch cmd := rest[0]; cmd {
	case "list":
		var list []rolloutRow
		body, err := adminCall(client, "GET", base+"/rollouts", "", nil, &list)
		if err != nil {
			return err
		}
		if *asJSON {
			_, err := stdout.Write(body)
			return err
		}
		if len(list) == 0 {
			fmt.Fprintln(stdout, "no rollouts")
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ROUTE\tBASELINE\tCANARY\tPHASE\tSTEP\tWEIGHT\tLAST ANALYSIS")
		for _, r := range list {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d/%d\t%d%%\t%s\n", r.Route, r.Baseline, r.Canary, r.Phase, r.Step+1, r.Steps, r.Weight, lastAnalysis(r))
		}
		return tw.Flush()
	case "show", "pause", "resume", "promote", "abort":
		if len(rest) < 2 {
			fmt.Fprintf(stderr, "penstock rollout %s: name the route\n", cmd)
			return errUsage
		}
		path := base + "/rollouts/" + url.PathEscape(rest[1])
		var d rolloutShow
		var body []byte
		var err error
		if cmd == "show" {
			if len(rest) > 2 {
				fmt.Fprintf(stderr, "penstock rollout show: unexpected argument %q\n", rest[2])
				return errUsage
			}
			body, err = adminCall(client, "GET", path, "", nil, &d)
		} else {
			token, terr := adminToken(*tokenFile)
			if terr != nil {
				return terr
			}
			reason, _ := json.Marshal(map[string]string{"reason": strings.Join(rest[2:], " ")})
			body, err = adminCall(client, "POST", path+"/"+cmd, token, reason, &d)
		}
		if err != nil {
			return err
		}
		if *asJSON {
			_, err := stdout.Write(body)
			return err
		}
		printRollout(stdout, d)
		return nil
	default:
		fmt.Fprintf(stderr, "penstock rollout: unknown subcommand %q (list, show, pause, resume, promote or abort)\n", cmd)
		return errUsage
	}
}

type rolloutRow struct {
	Route      string `json:"route"`
	Baseline   string `json:"baseline"`
	Canary     string `json:"canary"`
	Phase      string `json:"phase"`
	Step       int    `json:"step"`
	Steps      int    `json:"steps"`
	Weight     int    `json:"weight"`
	LastResult string `json:"last_outcome"`
	LastReason string `json:"last_reason"`
}

type rolloutShow struct {
	rolloutRow
	StateFile string `json:"state_file"`
	// Fleet is set when the rollout is shared through etcd.
	Fleet *struct {
		Revision  int64  `json:"revision"`
		Node      string `json:"node"`
		Leader    string `json:"leader"`
		Connected bool   `json:"connected"`
		LastError string `json:"last_error"`
	} `json:"fleet"`
	Live map[string]struct {
		Requests  int64   `json:"requests"`
		Errors    int64   `json:"errors"`
		ErrorRate float64 `json:"error_rate"`
		P50ms     float64 `json:"p50_ms"`
		P99ms     float64 `json:"p99_ms"`
		TTFTCount int64   `json:"ttft_count"`
		TTFTP50ms float64 `json:"ttft_p50_ms"`
		TTFTP99ms float64 `json:"ttft_p99_ms"`
		TokensPS  float64 `json:"tokens_per_second"`
	} `json:"live"`
	Definition struct {
		Window time.Duration `json:"window"`
	} `json:"definition"`
	State struct {
		History []struct {
			At     time.Time `json:"at"`
			Kind   string    `json:"kind"`
			Step   int       `json:"step"`
			Weight int       `json:"weight"`
			Reason string    `json:"reason"`
		} `json:"history"`
	} `json:"state"`
}

func lastAnalysis(r rolloutRow) string {
	switch {
	case r.LastResult == "":
		return "none yet"
	case r.LastReason != "":
		return r.LastResult + ": " + r.LastReason
	}
	return r.LastResult
}

func printRollout(w io.Writer, d rolloutShow) {
	fmt.Fprintf(w, "route %s: %s → %s, %s at step %d/%d, canary weight %d%%\n", d.Route, d.Baseline, d.Canary, d.Phase, d.Step+1, d.Steps, d.Weight)
	fmt.Fprintf(w, "last analysis: %s\n", lastAnalysis(d.rolloutRow))
	if d.StateFile != "" {
		fmt.Fprintf(w, "state file: %s\n", d.StateFile)
	}
	if f := d.Fleet; f != nil {
		link := "etcd connected"
		if !f.Connected {
			link = "etcd UNREACHABLE (holding the last step seen): " + f.LastError
		}
		fmt.Fprintf(w, "fleet: judged by node %s (this node: %s), state revision %d, %s\n", f.Leader, f.Node, f.Revision, link)
	}
	fmt.Fprintf(w, "\nlast %s:\n", d.Definition.Window)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ARM\tREQUESTS\tERRORS\tERROR RATE\tP50\tP99\tTTFT P50\tTTFT P99\tTOKENS/S")
	for _, arm := range []string{"baseline", "canary"} {
		f := d.Live[arm]
		fmt.Fprintf(tw, "%s\t%d\t%d\t%.2f%%\t%.1fms\t%.1fms\t%.1fms\t%.1fms\t%.0f\n", arm, f.Requests, f.Errors, 100*f.ErrorRate, f.P50ms, f.P99ms, f.TTFTP50ms, f.TTFTP99ms, f.TokensPS)
	}
	tw.Flush()
	fmt.Fprintln(w, "\nhistory:")
	for _, e := range d.State.History {
		line := fmt.Sprintf("  %s  %-11s step %d, weight %d%%", e.At.Format(time.RFC3339), e.Kind, e.Step+1, e.Weight)
		if e.Reason != "" {
			line += ": " + e.Reason
		}
		fmt.Fprintln(w, line)
	}
}

// adminCall calls the admin API and decodes its JSON answer into out; an
// error status becomes an error carrying the API's message.
func adminCall(client *http.Client, method, u, token string, body []byte, out any) ([]byte, error) {
	req, err := http.NewRequest(method, u, bytes.NewReader(body))
	if err != nil {
		return nil, err
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 8<<20))
	if err != nil {
		return nil, fmt.Errorf("admin API: %w", err)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			return nil, fmt.Errorf("%s %s: %s (%s)", method, u, e.Error, resp.Status)
		}
		return nil, fmt.Errorf("%s %s: %s", method, u, resp.Status)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return nil, fmt.Errorf("admin API answered %s: %w", u, err)
	}
	return b, nil
}

// adminToken reads the admin token from file, else $PENSTOCK_ADMIN_TOKEN.
func adminToken(file string) (string, error) {
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", err
		}
		return strings.TrimSpace(string(b)), nil
	}
	return os.Getenv("PENSTOCK_ADMIN_TOKEN"), nil
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}
