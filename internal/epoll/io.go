package epoll

// Handler is told the events of a descriptor registered with an IO. It runs
// on the IO's goroutine and must not block.
type Handler interface {
	// Event reports epoll events (unix.EPOLLIN, unix.EPOLLRDHUP, ...) for
	// the descriptor. inst is the polling instance the descriptor was
	// registered with by IO.Poll (0 to IO.Pollers()-1, the same for every
	// event of the registration), or -1 for the hang-up watcher
	// (IO.Watch). When the events say the peer hung up,
	// the Registration reports it (HungUp, Reset) before Event is called.
	Event(inst int, events uint32)
}
