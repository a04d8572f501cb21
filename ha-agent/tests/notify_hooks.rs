//! Notify hooks run one at a time in queue order, with a timeout that kills the whole
//! process group, and the generic hook gets keepalived's four arguments.

use antler_ha_agent::fsm::State;
use antler_ha_agent::notify::{HookJob, Notifier};
use rand::Rng;
use std::path::Path;
use std::time::{Duration, Instant};

fn quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

fn read_lines(p: &Path) -> Vec<String> {
    std::fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .map(str::to_string)
        .collect()
}

fn wait_for(what: &str, limit: Duration, mut f: impl FnMut() -> bool) {
    let start = Instant::now();
    while !f() {
        assert!(start.elapsed() < limit, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn hooks_run_one_at_a_time_in_queue_order() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("order.log");
    let n = Notifier::start(Duration::from_secs(10));
    let mut rng = rand::thread_rng();
    let mut expected = Vec::new();
    for i in 0..20 {
        let state = if i % 2 == 0 {
            State::Master
        } else {
            State::Backup
        };
        // Earlier hooks tend to sleep longer: any concurrency would reorder the file.
        let ms: u32 = rng.gen_range(0..60);
        let specific = format!(
            "sleep 0.{ms:03}; echo '{} {i}' >> {}",
            state.name(),
            quote(&out)
        );
        let generic = format!(
            "sleep 0.0{}; printf 'G %s %s %s %s\\n' >> {}",
            ms % 3,
            quote(&out)
        );
        let t = Instant::now();
        n.notify(HookJob {
            instance: format!("VI_{i}"),
            state,
            priority: 100 + i as u8,
            specific: Some(specific),
            generic: Some(generic),
        });
        assert!(t.elapsed() < Duration::from_millis(50), "notify() blocked");
        expected.push(format!("{} {i}", state.name()));
        expected.push(format!("G INSTANCE VI_{i} {} {}", state.name(), 100 + i));
    }
    n.shutdown();
    assert_eq!(read_lines(&out), expected);
}

#[test]
fn a_hung_hook_is_killed_with_its_group_and_the_next_one_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (out, sleep_pid) = (dir.path().join("next.log"), dir.path().join("sleep.pid"));
    let n = Notifier::start(Duration::from_secs(1));
    let start = Instant::now();
    n.notify(HookJob {
        instance: "VI_1".into(),
        state: State::Master,
        priority: 150,
        // A grandchild in the same process group must die too.
        specific: Some(format!("sleep 30 & echo $! > {}; wait", quote(&sleep_pid))),
        generic: None,
    });
    n.notify(HookJob {
        instance: "VI_1".into(),
        state: State::Backup,
        priority: 150,
        specific: Some(format!("echo next >> {}", quote(&out))),
        generic: None,
    });
    wait_for("the next hook", Duration::from_secs(10), || out.exists());
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "killed too early: {took:?}"
    );
    assert!(
        took < Duration::from_secs(5),
        "not killed at the timeout: {took:?}"
    );
    assert_eq!(read_lines(&out), ["next"]);

    let pid = std::fs::read_to_string(&sleep_pid)
        .unwrap()
        .trim()
        .to_string();
    wait_for(
        "the sleep grandchild to die",
        Duration::from_secs(5),
        || {
            match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
                Err(_) => true,
                // A zombie waiting for its new parent to reap it is dead enough.
                Ok(stat) => stat
                    .rsplit(')')
                    .next()
                    .is_some_and(|s| s.trim_start().starts_with('Z')),
            }
        },
    );
    n.shutdown();
}

#[test]
fn the_generic_hook_gets_exactly_four_arguments() {
    let dir = tempfile::tempdir().unwrap();
    let script = dir.path().join("notify.sh");
    let (args_out, specific_out) = (dir.path().join("args"), dir.path().join("specific"));
    std::fs::write(
        &script,
        format!(
            "#!/bin/sh\n{{ echo \"$#\"; for a in \"$@\"; do echo \"[$a]\"; done; }} >> {}\n",
            quote(&args_out)
        ),
    )
    .unwrap();
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o755)).unwrap();

    let n = Notifier::start(Duration::from_secs(5));
    for (state, prio) in [
        (State::Fault, 150u8),
        (State::Stopped, 0),
        (State::Master, 254),
    ] {
        n.notify(HookJob {
            instance: "VI MFS".into(), // a space must survive as one argument
            state,
            priority: prio,
            specific: Some(format!("echo \"$#\" >> {}", quote(&specific_out))),
            generic: Some(quote(&script)),
        });
    }
    n.shutdown();
    assert_eq!(
        read_lines(&args_out),
        [
            "4",
            "[INSTANCE]",
            "[VI MFS]",
            "[FAULT]",
            "[150]", //
            "4",
            "[INSTANCE]",
            "[VI MFS]",
            "[STOP]",
            "[0]", //
            "4",
            "[INSTANCE]",
            "[VI MFS]",
            "[MASTER]",
            "[254]",
        ]
    );
    // The state's own hook gets no argument (as keepalived).
    assert_eq!(read_lines(&specific_out), ["0", "0", "0"]);
}

#[test]
fn notify_returns_at_once_while_a_hook_runs() {
    let dir = tempfile::tempdir().unwrap();
    let (started, out) = (dir.path().join("started"), dir.path().join("out"));
    let n = Notifier::start(Duration::from_secs(10));
    n.notify(HookJob {
        instance: "VI_1".into(),
        state: State::Master,
        priority: 100,
        specific: Some(format!("touch {}; sleep 2", quote(&started))),
        generic: None,
    });
    wait_for("the slow hook to start", Duration::from_secs(10), || {
        started.exists()
    });
    let t = Instant::now();
    for i in 0..50 {
        let one = Instant::now();
        n.notify(HookJob {
            instance: "VI_1".into(),
            state: if i % 2 == 0 {
                State::Backup
            } else {
                State::Master
            },
            priority: 100,
            specific: Some(format!("echo {i} >> {}", quote(&out))),
            generic: None,
        });
        assert!(
            one.elapsed() < Duration::from_millis(20),
            "notify() blocked"
        );
    }
    assert!(
        t.elapsed() < Duration::from_millis(100),
        "{:?}",
        t.elapsed()
    );
    // The slow hook is still running: nothing queued after it has run yet.
    assert!(!out.exists());
    n.shutdown();
    let want: Vec<String> = (0..50).map(|i| i.to_string()).collect();
    assert_eq!(read_lines(&out), want);
}
