//! Workers' descendants that escaped their worker's process group.
//!
//! Every signal the supervisor sends a worker goes to its process group,
//! and the group is killed when the worker is reaped; a descendant that
//! leaves the group (`setsid`, `setpgid`) escapes both. The supervisor is
//! a child subreaper (`PR_SET_CHILD_SUBREAPER`, set in [`subreap`]), so
//! such a process, orphaned when its worker dies, becomes the
//! supervisor's child instead of init's: at the end of the run, when no
//! worker is left, whatever still descends from the supervisor is a
//! process a worker left behind, and [`find`] names it.

use std::collections::HashMap;

/// Makes orphaned descendants the supervisor's children. A failure only
/// means they cannot be named at the end.
pub(crate) fn subreap() {
    let _ = nix::sys::prctl::set_child_subreaper(true);
}

/// One process as `/proc/PID/stat` has it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Proc {
    pid: i32,
    ppid: i32,
    pgid: i32,
    /// A zombie or dead process (`Z`, `X`): nothing left to run.
    gone: bool,
}

fn read_stat(pid: i32) -> Option<Proc> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: the fields start
    // after the last ')'.
    let mut f = stat.rsplit_once(')')?.1.split_whitespace();
    let state = f.next()?;
    let ppid = f.next()?.parse().ok()?;
    let pgid = f.next()?.parse().ok()?;
    Some(Proc {
        pid,
        ppid,
        pgid,
        gone: matches!(state, "Z" | "X"),
    })
}

/// The live descendants of `me` that are not in a dying group: those
/// whose process group's leader is alive (an escaped process leads its
/// own group, or is in one an escaped process leads), sorted. A process
/// left in a dead worker's group is not one: that group was sent
/// `SIGKILL` and is on its way out.
fn pick(procs: &[Proc], me: i32) -> Vec<i32> {
    let by_pid: HashMap<i32, Proc> = procs.iter().map(|p| (p.pid, *p)).collect();
    let descends = |p: &Proc| {
        let mut p = *p;
        // Bounded: a pid cycle cannot happen, but a racy read could.
        for _ in 0..procs.len() {
            if p.ppid == me {
                return true;
            }
            match by_pid.get(&p.ppid) {
                Some(parent) => p = *parent,
                None => return false,
            }
        }
        false
    };
    let leader_alive = |p: &Proc| by_pid.get(&p.pgid).is_some_and(|l| !l.gone);
    let mut out: Vec<i32> = procs
        .iter()
        .filter(|p| p.pid != me && !p.gone && leader_alive(p) && descends(p))
        .map(|p| p.pid)
        .collect();
    out.sort_unstable();
    out
}

/// The processes descending from this one, found in `/proc`, that escaped
/// their worker's process group; call it once no worker is left.
pub(crate) fn find() -> Vec<i32> {
    let me = std::process::id() as i32;
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let procs: Vec<Proc> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse().ok())
        .filter_map(read_stat)
        .collect();
    pick(&procs, me)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(pid: i32, ppid: i32, pgid: i32, gone: bool) -> Proc {
        Proc {
            pid,
            ppid,
            pgid,
            gone,
        }
    }

    #[test]
    fn only_live_descendants_outside_a_dying_group_are_named() {
        let me = 100;
        let procs = [
            p(1, 0, 1, false),
            p(me, 1, me, false),
            // Escaped with setsid, reparented to the supervisor, and its
            // own child, in its group.
            p(200, me, 200, false),
            p(201, 200, 200, false),
            // Left in dead worker 300's group, being killed.
            p(301, me, 300, false),
            // A zombie that escaped: nothing left.
            p(400, me, 400, true),
            // Someone else's process.
            p(500, 1, 500, false),
        ];
        assert_eq!(pick(&procs, me), [200, 201]);
    }
}
