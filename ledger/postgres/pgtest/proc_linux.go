package pgtest

import "syscall"

// sysProcAttr runs a child as cred (nil: as this process) and has the
// kernel send it SIGQUIT, PostgreSQL's immediate shutdown, should this
// process die without stopping it.
func sysProcAttr(cred *syscall.Credential) *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Credential: cred, Pdeathsig: syscall.SIGQUIT}
}
