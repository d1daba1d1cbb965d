package pgcluster

import "syscall"

// setParentDeathSignal makes the kernel send the postmaster SIGQUIT (immediate
// shutdown) when the thread that started it dies, which for a Go program
// means when the owning process exits without Stop. Go only ends a thread
// whose goroutine exits while locked to it; Start is never called that way.
func setParentDeathSignal(attr *syscall.SysProcAttr) {
	attr.Pdeathsig = syscall.SIGQUIT
}
