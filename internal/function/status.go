package function

import "time"

// Status is a function's state for the admin API (GET /functions).
type Status struct {
	Name           string   `json:"name"`
	Mode           string   `json:"mode"`
	Command        []string `json:"command"`
	MinInstances   int      `json:"min_instances"`
	MaxInstances   int      `json:"max_instances"`
	MaxConcurrency int      `json:"max_concurrency"`
	Timeout        string   `json:"timeout"`
	IdleTimeout    string   `json:"idle_timeout"`
	// Limits is the mechanism that caps memory and CPU: cgroup_v2, rlimit
	// or none.
	Limits    string           `json:"limits"`
	Queued    int              `json:"queued"`
	MaxQueue  int              `json:"max_queue"`
	Instances []InstanceStatus `json:"instances"`
}

// InstanceStatus is one instance in Status.
type InstanceStatus struct {
	ID       int     `json:"id"`
	PID      int     `json:"pid,omitempty"`
	State    string  `json:"state"`
	InFlight int     `json:"in_flight"`
	Served   int64   `json:"served"`
	InitMS   float64 `json:"init_ms,omitempty"`
	// IdleFor is how long the instance has served nothing.
	IdleFor string `json:"idle_for,omitempty"`
	// Limits says what applied to this instance's process.
	Limits string `json:"limits,omitempty"`
	// Address is where an http-mode instance listens.
	Address string `json:"address,omitempty"`
}

// Status returns f's configuration summary and its instances now.
func (f *Function) Status() Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := Status{Name: f.name, Mode: f.cfg.Mode, Command: f.cfg.Command,
		MinInstances: f.cfg.MinInstances, MaxInstances: f.cfg.MaxInstances,
		MaxConcurrency: f.cfg.MaxConcurrency, Timeout: f.cfg.Timeout.String(),
		IdleTimeout: f.cfg.IdleTimeout.String(), Limits: f.limits.mechanism,
		Queued: len(f.waiters), MaxQueue: f.cfg.MaxQueue, Instances: []InstanceStatus{}}
	now := time.Now()
	for _, in := range f.instances {
		is := InstanceStatus{ID: in.id, State: in.gaugeState().String(), InFlight: in.inflight,
			Served: in.served, Address: in.address}
		if in.state != stateStarting {
			is.PID = in.pid
			is.Limits = in.limits
			is.InitMS = float64(time.Duration(in.initDuration.Load()).Microseconds()) / 1000
			if in.inflight == 0 {
				is.IdleFor = now.Sub(in.lastUsed).Round(time.Millisecond).String()
			}
		}
		s.Instances = append(s.Instances, is)
	}
	return s
}
