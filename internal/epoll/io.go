package epoll

// Handler is told the events of a descriptor registered with an IO. It runs
// on the IO's goroutine and must not block.
type Handler interface {
	// Event reports epoll events (unix.EPOLLIN, unix.EPOLLRDHUP, ...) for
	// the descriptor. inst is the polling instance the descriptor was
	// registered with (IO.Poll, Registration.Poller), or -1 for the
	// hang-up watcher (IO.Watch). When the events say the peer hung up,
	// the Registration reports it (HungUp, Reset) before Event is called.
	Event(inst int, events uint32)
}
