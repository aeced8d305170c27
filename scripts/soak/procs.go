package main

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"syscall"
	"time"
)

// child is a process the driver started and must stop: it dies with the driver
// (Pdeathsig) and is stopped by its own PID, never by name.
type child struct {
	name   string
	cmd    *exec.Cmd
	exited chan struct{}
}

// startChild runs path with args and env added to the driver's, its output appended to
// logPath.
func startChild(name, logPath string, env []string, path string, args ...string) (*child, error) {
	log, err := os.OpenFile(logPath, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	defer log.Close() // the child holds its own descriptor
	cmd := exec.Command(path, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = log, log
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	c := &child{name: name, cmd: cmd, exited: make(chan struct{})}
	go func() {
		_ = cmd.Wait() // stopped on purpose, or reported by whoever waits on exited
		close(c.exited)
	}()
	return c, nil
}

// stop sends SIGTERM, then SIGKILL after 10 s, and waits for the exit.
func (c *child) stop() {
	_ = c.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-c.exited:
	case <-time.After(10 * time.Second):
		_ = c.cmd.Process.Kill()
		<-c.exited
	}
}

// awaitUp polls until ready answers nil, failing when the child exits or 15 s pass.
func (c *child) awaitUp(ready func() error) error {
	deadline := time.Now().Add(15 * time.Second)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		select {
		case <-c.exited:
			return fmt.Errorf("%s exited: %v", c.name, c.cmd.ProcessState)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s did not start: %w", c.name, err)
		}
	}
}

// redisServer is the soak's private redis-server: restarting it troubles no one else.
type redisServer struct {
	port int
	dir  string
	proc *child
}

// start runs redis-server on r.port without persistence and waits for its PING.
func (r *redisServer) start() error {
	c, err := startChild("redis-server", r.dir+"/redis.log", nil, "redis-server",
		"--port", strconv.Itoa(r.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--daemonize", "no", "--dir", r.dir)
	if err != nil {
		return err
	}
	r.proc = c
	return c.awaitUp(func() error { return redisPing(r.addr()) })
}

// restart kills the server like a crash, waits down, and starts it again, empty.
func (r *redisServer) restart(down time.Duration) error {
	_ = r.proc.cmd.Process.Kill()
	<-r.proc.exited
	time.Sleep(down)
	return r.start()
}

func (r *redisServer) addr() string { return net.JoinHostPort("127.0.0.1", strconv.Itoa(r.port)) }

// redisPing sends one inline PING on a fresh connection.
func redisPing(addr string) error {
	conn, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(time.Second))
	if _, err := conn.Write([]byte("PING\r\n")); err != nil {
		return err
	}
	buf := make([]byte, 7)
	if n, err := conn.Read(buf); err != nil || string(buf[:n]) != "+PONG\r\n" {
		return fmt.Errorf("redis PING: %q %v", buf[:n], err)
	}
	return nil
}

// httpUp is a ready function: url answers any HTTP status.
func httpUp(url string) func() error {
	return func() error {
		resp, err := http.Get(url)
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	}
}

// freePort asks the kernel for a free 127.0.0.1 port.
func freePort() (int, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port, nil
}
