//! seccomp filters (seccompiler) for the two processes.
//!
//! The signer gets an allowlist: its socket, memory, threads and clocks,
//! reading key files, and outbound TCP for Vault refreshes. Vault tokens
//! expire and keys rotate, so the signer must reach Vault; doing that
//! itself (rather than through another fetcher process) keeps the token
//! in one process, and the allowance is narrow: `socket` for IPv4, IPv6
//! and Unix (the resolver's nscd) only, no `bind`, `listen` or `accept`,
//! no `execve`, no `ptrace`. Anything else fails with `EPERM`.
//!
//! The network process gets a denylist, `@system-service`-like: what
//! could run another program, inspect another process or change the
//! system fails with `EPERM` (`execve`, `ptrace`, `process_vm_readv`,
//! mounts, modules, kexec, bpf, keyrings, namespaces, identity changes).

use crate::SignerError;
use seccompiler::{
    BpfProgram, SeccompAction, SeccompCmpArgLen, SeccompCmpOp, SeccompCondition, SeccompFilter,
    SeccompRule, TargetArch,
};
use std::collections::BTreeMap;

fn arch() -> Result<TargetArch, SignerError> {
    std::env::consts::ARCH
        .try_into()
        .map_err(|e| SignerError::Sandbox(format!("{e:?}")))
}

fn compile(
    rules: BTreeMap<i64, Vec<SeccompRule>>,
    mismatch: SeccompAction,
    matched: SeccompAction,
) -> Result<BpfProgram, SignerError> {
    SeccompFilter::new(rules, mismatch, matched, arch()?)
        .and_then(|f| f.try_into())
        .map_err(|e| SignerError::Sandbox(e.to_string()))
}

fn eperm() -> SeccompAction {
    SeccompAction::Errno(libc::EPERM as u32)
}

/// What the signer may do after start-up.
fn signer_rules() -> Result<BTreeMap<i64, Vec<SeccompRule>>, SignerError> {
    let mut allowed: Vec<i64> = vec![
        // Its socket and files.
        libc::SYS_read,
        libc::SYS_write,
        libc::SYS_readv,
        libc::SYS_writev,
        libc::SYS_pread64,
        libc::SYS_recvfrom,
        libc::SYS_recvmsg,
        libc::SYS_sendto,
        libc::SYS_sendmsg,
        libc::SYS_sendmmsg,
        libc::SYS_recvmmsg,
        libc::SYS_close,
        libc::SYS_openat,
        libc::SYS_fstat,
        libc::SYS_newfstatat,
        libc::SYS_statx,
        libc::SYS_lseek,
        libc::SYS_readlinkat,
        libc::SYS_getcwd,
        libc::SYS_fcntl,
        libc::SYS_ioctl,
        libc::SYS_ppoll,
        libc::SYS_pselect6,
        libc::SYS_epoll_create1,
        libc::SYS_epoll_ctl,
        libc::SYS_epoll_pwait,
        libc::SYS_eventfd2,
        libc::SYS_pipe2,
        libc::SYS_socketpair,
        libc::SYS_dup,
        libc::SYS_dup3,
        // Outbound connections to Vault (socket itself is checked below).
        libc::SYS_connect,
        libc::SYS_getsockopt,
        libc::SYS_setsockopt,
        libc::SYS_getsockname,
        libc::SYS_getpeername,
        libc::SYS_shutdown,
        // Memory.
        libc::SYS_mmap,
        libc::SYS_munmap,
        libc::SYS_mremap,
        libc::SYS_mprotect,
        libc::SYS_madvise,
        libc::SYS_brk,
        // Threads (the HTTP client runs one) and their synchronisation.
        libc::SYS_clone,
        libc::SYS_clone3,
        libc::SYS_futex,
        libc::SYS_set_robust_list,
        libc::SYS_rseq,
        libc::SYS_sched_yield,
        libc::SYS_sched_getaffinity,
        libc::SYS_prctl,
        libc::SYS_getpid,
        libc::SYS_gettid,
        libc::SYS_getuid,
        libc::SYS_geteuid,
        libc::SYS_getgid,
        libc::SYS_getegid,
        libc::SYS_uname,
        libc::SYS_sysinfo,
        libc::SYS_getrandom,
        // Clocks and sleeping (the rate limit paces).
        libc::SYS_clock_gettime,
        libc::SYS_clock_getres,
        libc::SYS_clock_nanosleep,
        libc::SYS_nanosleep,
        libc::SYS_gettimeofday,
        // Signals and the end.
        libc::SYS_rt_sigaction,
        libc::SYS_rt_sigprocmask,
        libc::SYS_rt_sigreturn,
        libc::SYS_sigaltstack,
        libc::SYS_restart_syscall,
        libc::SYS_exit,
        libc::SYS_exit_group,
    ];
    #[cfg(target_arch = "x86_64")]
    allowed.extend([
        libc::SYS_open,
        libc::SYS_stat,
        libc::SYS_lstat,
        libc::SYS_poll,
        libc::SYS_select,
        libc::SYS_epoll_wait,
        libc::SYS_readlink,
        libc::SYS_arch_prctl,
        libc::SYS_time,
    ]);
    let mut rules: BTreeMap<i64, Vec<SeccompRule>> =
        allowed.into_iter().map(|s| (s, Vec::new())).collect();
    let family = |f: i32| -> Result<SeccompRule, SignerError> {
        SeccompRule::new(vec![SeccompCondition::new(
            0,
            SeccompCmpArgLen::Dword,
            SeccompCmpOp::Eq,
            f as u64,
        )
        .map_err(|e| SignerError::Sandbox(e.to_string()))?])
        .map_err(|e| SignerError::Sandbox(e.to_string()))
    };
    rules.insert(
        libc::SYS_socket,
        vec![
            family(libc::AF_INET)?,
            family(libc::AF_INET6)?,
            family(libc::AF_UNIX)?,
        ],
    );
    Ok(rules)
}

/// Applies the signer's allowlist to the calling (single-threaded)
/// process. Sets `no_new_privs` first, as seccomp requires.
pub fn apply_signer_filter() -> Result<(), SignerError> {
    let prog = compile(signer_rules()?, eperm(), SeccompAction::Allow)?;
    seccompiler::apply_filter(&prog).map_err(|e| SignerError::Sandbox(e.to_string()))
}

/// System calls the network process never needs after start-up.
fn network_denied() -> Vec<i64> {
    let mut denied = vec![
        libc::SYS_execve,
        libc::SYS_execveat,
        libc::SYS_ptrace,
        libc::SYS_process_vm_readv,
        libc::SYS_process_vm_writev,
        libc::SYS_pidfd_getfd,
        libc::SYS_kcmp,
        libc::SYS_mount,
        libc::SYS_umount2,
        libc::SYS_pivot_root,
        libc::SYS_chroot,
        libc::SYS_move_mount,
        libc::SYS_open_tree,
        libc::SYS_fsopen,
        libc::SYS_fsmount,
        libc::SYS_init_module,
        libc::SYS_finit_module,
        libc::SYS_delete_module,
        libc::SYS_kexec_load,
        libc::SYS_kexec_file_load,
        libc::SYS_reboot,
        libc::SYS_swapon,
        libc::SYS_swapoff,
        libc::SYS_bpf,
        libc::SYS_perf_event_open,
        libc::SYS_userfaultfd,
        libc::SYS_keyctl,
        libc::SYS_add_key,
        libc::SYS_request_key,
        libc::SYS_unshare,
        libc::SYS_setns,
        libc::SYS_acct,
        libc::SYS_quotactl,
        libc::SYS_settimeofday,
        libc::SYS_clock_settime,
        libc::SYS_adjtimex,
        libc::SYS_setuid,
        libc::SYS_setgid,
        libc::SYS_setreuid,
        libc::SYS_setregid,
        libc::SYS_setresuid,
        libc::SYS_setresgid,
        libc::SYS_setgroups,
        libc::SYS_setfsuid,
        libc::SYS_setfsgid,
        libc::SYS_personality,
    ];
    #[cfg(target_arch = "x86_64")]
    denied.extend([libc::SYS_iopl, libc::SYS_ioperm, libc::SYS_uselib]);
    denied
}

/// Applies the network process's denylist to every thread of the calling
/// process (TSYNC). Call after start-up: listeners bound, privileges
/// dropped, the signer started.
pub fn apply_network_filter() -> Result<(), SignerError> {
    let rules = network_denied()
        .into_iter()
        .map(|s| (s, Vec::new()))
        .collect();
    let prog = compile(rules, SeccompAction::Allow, eperm())?;
    seccompiler::apply_filter_all_threads(&prog).map_err(|e| SignerError::Sandbox(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_compile() {
        compile(signer_rules().unwrap(), eperm(), SeccompAction::Allow).unwrap();
        let rules = network_denied()
            .into_iter()
            .map(|s| (s, Vec::new()))
            .collect();
        compile(rules, SeccompAction::Allow, eperm()).unwrap();
    }
}
