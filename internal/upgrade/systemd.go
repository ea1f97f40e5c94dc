package upgrade

import (
	"net"
	"os"
	"strconv"
)

// Notify sends a systemd sd_notify message ("READY=1", "MAINPID=123", ...)
// when the process runs under a unit with Type=notify; otherwise it does
// nothing. It is a few lines over a unix datagram socket, so no library is
// pulled in for it (the protocol: sd_notify(3)).
func Notify(state string) {
	path := os.Getenv("NOTIFY_SOCKET")
	if path == "" {
		return
	}
	if path[0] == '@' {
		path = "\x00" + path[1:] // abstract socket namespace
	}
	c, err := net.DialUnix("unixgram", nil, &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		return
	}
	defer c.Close()
	c.Write([]byte(state))
}

// NotifyReady tells systemd this process is the service's main process and
// is serving. After a binary upgrade the main PID changes, which systemd
// accepts from a unit with NotifyAccess=all.
func NotifyReady() {
	Notify("MAINPID=" + strconv.Itoa(os.Getpid()) + "\nREADY=1")
}
