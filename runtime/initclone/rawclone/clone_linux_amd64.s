// The clone of the init, sharing the caller's memory until its exec
// (see rawclone_linux_amd64.go). The child runs only this code: it reads its
// program, makes its system calls, and execs or exits. It never returns
// into Go, never touches the stack it shares with the suspended caller,
// and runs with every signal blocked until its last steps.

#include "textflag.h"

#define SYS_rt_sigaction	13
#define SYS_rt_sigprocmask	14
#define SYS_clone		56
#define SYS_exit		60

// Offsets in cloneProg.
#define PROG_OPS	0
#define PROG_NOPS	8
#define PROG_ALL	16
#define PROG_OLD	24
#define PROG_FAILOP	32
#define PROG_FAILERR	40
#define PROG_ACT	48
#define PROG_DFL	80

// A cloneOp is 64 bytes; the nr -1 stands for "reset signal handlers".
#define OP_SIGNALS	$-1

// func rawClone(flags uintptr, p *cloneProg) (pid uintptr, errno uintptr)
TEXT ·rawClone(SB),NOSPLIT|NOFRAME,$0-32
	MOVQ	p+8(FP), R12
	// Block every signal on this thread and keep the old mask: neither
	// the child, before its exec, nor this thread, while the child
	// shares its memory, may run a Go signal handler.
	MOVQ	$SYS_rt_sigprocmask, AX
	MOVQ	$0, DI			// SIG_BLOCK
	LEAQ	PROG_ALL(R12), SI
	LEAQ	PROG_OLD(R12), DX
	MOVQ	$8, R10
	SYSCALL
	MOVQ	flags+0(FP), DI
	MOVQ	$0, SI			// the same stack: the caller sleeps until the exec
	MOVQ	$0, DX
	MOVQ	$0, R10
	MOVQ	$0, R8
	MOVQ	$0, R9
	MOVQ	$SYS_clone, AX
	SYSCALL
	CMPQ	AX, $0
	JEQ	child
	MOVQ	AX, R13
	MOVQ	$SYS_rt_sigprocmask, AX
	MOVQ	$2, DI			// SIG_SETMASK
	LEAQ	PROG_OLD(R12), SI
	MOVQ	$0, DX
	MOVQ	$8, R10
	SYSCALL
	CMPQ	R13, $0xfffffffffffff001
	JLS	ok
	NEGQ	R13
	MOVQ	$0, pid+16(FP)
	MOVQ	R13, errno+24(FP)
	RET
ok:
	MOVQ	R13, pid+16(FP)
	MOVQ	$0, errno+24(FP)
	RET

child:
	MOVQ	PROG_OPS(R12), R14
	MOVQ	PROG_NOPS(R12), R15
	MOVQ	$0, BX
next:
	CMPQ	BX, R15
	JGE	done
	MOVQ	BX, R13
	SHLQ	$6, R13
	ADDQ	R14, R13
	MOVQ	0(R13), AX
	CMPQ	AX, OP_SIGNALS
	JEQ	signals
	MOVQ	8(R13), DI
	MOVQ	16(R13), SI
	MOVQ	24(R13), DX
	MOVQ	32(R13), R10
	MOVQ	40(R13), R8
	MOVQ	48(R13), R9
	SYSCALL
	CMPQ	AX, $0xfffffffffffff001
	JHI	fail
	INCQ	BX
	JMP	next
fail:
	NEGQ	AX
	MOVQ	AX, PROG_FAILERR(R12)
	INCQ	BX
	MOVQ	BX, PROG_FAILOP(R12)
done:
	MOVQ	$253, DI
	MOVQ	$SYS_exit, AX
	SYSCALL
	JMP	done

	// Every handler that is not SIG_DFL or SIG_IGN goes back to SIG_DFL:
	// the Go runtime's handlers must not run in the child, and ignored
	// signals stay ignored across the exec, as POSIX has it.
signals:
	MOVQ	$1, R13
sigloop:
	CMPQ	R13, $65
	JGE	sigdone
	CMPQ	R13, $9			// SIGKILL
	JEQ	sigskip
	CMPQ	R13, $19		// SIGSTOP
	JEQ	sigskip
	MOVQ	$SYS_rt_sigaction, AX
	MOVQ	R13, DI
	MOVQ	$0, SI
	LEAQ	PROG_ACT(R12), DX
	MOVQ	$8, R10
	SYSCALL
	CMPQ	AX, $0xfffffffffffff001
	JHI	sigskip
	MOVQ	PROG_ACT(R12), AX
	CMPQ	AX, $1			// SIG_DFL or SIG_IGN
	JLS	sigskip
	MOVQ	$SYS_rt_sigaction, AX
	MOVQ	R13, DI
	LEAQ	PROG_DFL(R12), SI
	MOVQ	$0, DX
	MOVQ	$8, R10
	SYSCALL
sigskip:
	INCQ	R13
	JMP	sigloop
sigdone:
	INCQ	BX
	JMP	next

// func rawSyscall6(nr, a1, a2, a3, a4, a5, a6 uintptr) (r uintptr, errno uintptr)
TEXT ·rawSyscall6(SB),NOSPLIT,$0-72
	MOVQ	a1+8(FP), DI
	MOVQ	a2+16(FP), SI
	MOVQ	a3+24(FP), DX
	MOVQ	a4+32(FP), R10
	MOVQ	a5+40(FP), R8
	MOVQ	a6+48(FP), R9
	MOVQ	nr+0(FP), AX
	SYSCALL
	CMPQ	AX, $0xfffffffffffff001
	JLS	ok6
	NEGQ	AX
	MOVQ	$0, r+56(FP)
	MOVQ	AX, errno+64(FP)
	RET
ok6:
	MOVQ	AX, r+56(FP)
	MOVQ	$0, errno+64(FP)
	RET
