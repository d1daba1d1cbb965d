//go:build !linux

package pgcluster

import "syscall"

// setParentDeathSignal does nothing where the kernel has no parent-death
// signal: a server whose owner dies without Stop keeps running.
func setParentDeathSignal(*syscall.SysProcAttr) {}
