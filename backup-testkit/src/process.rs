//! Processes: each server in a process group of its own, killed with all it
//! started; the ports a process listens on; waiting with a hang guard.
//!
//! Processes are only ever signalled by their own id or their group's id,
//! never by name.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::os::unix::process::CommandExt;
use std::process::{Child, Command};
use std::time::{Duration, Instant};

use rustix::process::{kill_process, kill_process_group, Pid, Signal};

/// Makes `command` start a process group of its own (its id is the child's
/// id), so that [`kill_tree`] reaches whatever it forks.
pub fn in_own_group(command: &mut Command) -> &mut Command {
    command.process_group(0)
}

/// Kills (SIGKILL) the process `pid`, its process group (when it leads one,
/// as after [`in_own_group`]) and every process below it that left the
/// group (sshd puts each connection in a session of its own). Processes
/// already gone are fine.
pub fn kill_tree(pid: u32) {
    // The descendants first, before the kill re-parents them to init.
    let below = descendants(pid);
    let Some(leader) = i32::try_from(pid).ok().and_then(Pid::from_raw) else {
        return;
    };
    let _ = kill_process_group(leader, Signal::KILL);
    let _ = kill_process(leader, Signal::KILL);
    for child in below {
        if let Some(child) = i32::try_from(child).ok().and_then(Pid::from_raw) {
            let _ = kill_process(child, Signal::KILL);
        }
    }
}

/// Kills `child` with its group and descendants ([`kill_tree`]) and reaps it.
pub fn kill_and_reap(child: &mut Child) {
    kill_tree(child.id());
    let _ = child.wait();
}

/// The processes below `root` (children, grandchildren…), from /proc.
pub fn descendants(root: u32) -> Vec<u32> {
    let mut children: BTreeMap<u32, Vec<u32>> = BTreeMap::new();
    for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|name| name.parse::<u32>().ok())
        else {
            continue;
        };
        let Ok(stat) = fs::read_to_string(entry.path().join("stat")) else {
            continue;
        };
        // The parent's id is the second field after the parenthesised name.
        let Some((_, after_name)) = stat.rsplit_once(')') else {
            continue;
        };
        if let Some(parent) = after_name
            .split_whitespace()
            .nth(1)
            .and_then(|field| field.parse::<u32>().ok())
        {
            children.entry(parent).or_default().push(pid);
        }
    }
    let mut found = Vec::new();
    let mut pending = vec![root];
    while let Some(pid) = pending.pop() {
        for &child in children.get(&pid).into_iter().flatten() {
            found.push(child);
            pending.push(child);
        }
    }
    found
}

/// The TCP ports that `pid` or a process below it listens on, from /proc:
/// the listening sockets of /proc/net/tcp{,6} whose inodes the processes
/// hold open. The kernel's word, not the process's: a port another process
/// holds is never counted.
pub fn listening_ports(pid: u32) -> BTreeSet<u16> {
    let mut inodes = BTreeSet::new();
    for process in std::iter::once(pid).chain(descendants(pid)) {
        let Ok(fds) = fs::read_dir(format!("/proc/{process}/fd")) else {
            continue;
        };
        for fd in fds.flatten() {
            let Ok(target) = fs::read_link(fd.path()) else {
                continue;
            };
            if let Some(inode) = target
                .to_str()
                .and_then(|t| t.strip_prefix("socket:["))
                .and_then(|t| t.strip_suffix(']'))
                .and_then(|t| t.parse::<u64>().ok())
            {
                inodes.insert(inode);
            }
        }
    }
    listening_sockets()
        .into_iter()
        .filter(|(_, inode)| inodes.contains(inode))
        .map(|(port, _)| port)
        .collect()
}

/// Whether any process listens on TCP `port`.
pub fn port_is_listened_on(port: u16) -> bool {
    listening_sockets().iter().any(|&(p, _)| p == port)
}

/// (port, inode) of every listening TCP socket.
fn listening_sockets() -> Vec<(u16, u64)> {
    const LISTEN: &str = "0A";
    let mut sockets = Vec::new();
    for table in ["/proc/net/tcp", "/proc/net/tcp6"] {
        let Ok(text) = fs::read_to_string(table) else {
            continue;
        };
        for line in text.lines().skip(1) {
            // sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
            let fields: Vec<&str> = line.split_whitespace().collect();
            let (Some(local), Some(state), Some(inode)) =
                (fields.get(1), fields.get(3), fields.get(9))
            else {
                continue;
            };
            if *state != LISTEN {
                continue;
            }
            let port = local
                .rsplit_once(':')
                .and_then(|(_, port)| u16::from_str_radix(port, 16).ok());
            if let (Some(port), Ok(inode)) = (port, inode.parse::<u64>()) {
                sockets.push((port, inode));
            }
        }
    }
    sockets
}

/// Polls `done` every 50 ms until it returns `Some`, and returns that.
///
/// `hang_guard` is not a speed requirement: it only turns a hang into a
/// failure, so make it generous (minutes, not seconds).
///
/// # Panics
///
/// When `hang_guard` passes first, saying it waited for `what`.
pub fn wait_for<T>(what: &str, hang_guard: Duration, mut done: impl FnMut() -> Option<T>) -> T {
    let deadline = Instant::now() + hang_guard;
    loop {
        if let Some(value) = done() {
            return value;
        }
        assert!(
            Instant::now() < deadline,
            "still waiting for {what} after {hang_guard:?}: something hangs"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;
    use std::process::Stdio;

    #[test]
    fn our_listening_port_is_found_and_a_killed_group_is_gone() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("binding");
        let port = listener.local_addr().expect("address").port();
        assert!(listening_ports(std::process::id()).contains(&port));
        assert!(port_is_listened_on(port));
        drop(listener);
        assert!(!listening_ports(std::process::id()).contains(&port));

        // A shell in its own group with a child that sleeps: both go.
        let mut command = Command::new("sh");
        command
            .args(["-c", "sleep 600 & wait"])
            .stdout(Stdio::null());
        let mut shell = in_own_group(&mut command).spawn().expect("starting sh");
        let sleeper = wait_for("the shell's child", Duration::from_secs(60), || {
            descendants(shell.id()).first().copied()
        });
        kill_and_reap(&mut shell);
        wait_for("the sleeper's end", Duration::from_secs(60), || {
            let stat = fs::read_to_string(format!("/proc/{sleeper}/stat")).unwrap_or_default();
            // Gone, or a zombie waiting for init to reap it.
            (stat.is_empty() || stat.contains(") Z ")).then_some(())
        });
    }
}
