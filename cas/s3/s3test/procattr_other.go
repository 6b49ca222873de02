//go:build !linux

package s3test

import "syscall"

// procAttr has nothing to add where the parent's death cannot be signalled.
func procAttr() *syscall.SysProcAttr { return nil }
