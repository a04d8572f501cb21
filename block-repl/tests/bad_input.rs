//! Bad input against a real daemon on loopback: malformed and truncated replication
//! frames close the connection with a logged reason and apply nothing partial; the
//! daemon keeps serving. Configuration errors name the file, line and key.

mod common;

use antler_block_repl::frame::{DiskState, Frame};
use antler_block_repl::wire::{auth_response, read_frame};
use common::*;
use std::io::Write;
use std::net::TcpStream;
use std::os::unix::fs::FileExt;
use std::time::Duration;

const LONG: Duration = Duration::from_secs(60);

/// Connects to node2 pretending to be node1 (the test knows the secret), and gets to
/// Connected. Returns the stream.
fn impostor(p: &Pair, addr: &str) -> TcpStream {
    let mut s = TcpStream::connect(addr).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let (challenge, size) = match read_frame(&mut s).unwrap().0 {
        Frame::Hello {
            challenge, size, ..
        } => (challenge, size),
        f => panic!("expected Hello, got {f:?}"),
    };
    let mine = [9u8; 32];
    s.write_all(
        &Frame::Hello {
            node: "node1".into(),
            size,
            challenge: mine,
        }
        .encode(),
    )
    .unwrap();
    s.write_all(
        &Frame::Auth {
            response: auth_response("t3st-secret", &challenge, "node1"),
        }
        .encode(),
    )
    .unwrap();
    assert!(matches!(read_frame(&mut s).unwrap().0, Frame::Auth { .. }));
    let state = read_frame(&mut s).unwrap().0;
    let Frame::State {
        current,
        bitmap,
        history,
        ..
    } = state
    else {
        panic!("expected State, got {state:?}")
    };
    // Same generations, secondary: the daemon considers us in sync.
    s.write_all(
        &Frame::State {
            current,
            bitmap,
            history,
            primary: false,
            disk: DiskState::Inconsistent,
            dirty: 0,
            promoted_at: 0,
        }
        .encode(),
    )
    .unwrap();
    p.wait_cstate(1, "Connected", LONG);
    s
}

fn image_block(p: &Pair, off: u64) -> Vec<u8> {
    let f = std::fs::File::open(p.dir.join("node2.img")).unwrap();
    let mut b = vec![0u8; 4096];
    f.read_exact_at(&mut b, off).unwrap();
    b
}

#[test]
fn malformed_and_truncated_frames_close_the_connection_and_apply_nothing() {
    let p = Pair::new(Opts {
        netns: false,
        mib: 32,
        ..Default::default()
    });
    let text = std::fs::read_to_string(&p.cfg).unwrap();
    let addr = text
        .lines()
        .filter(|l| l.starts_with("address"))
        .nth(1)
        .unwrap()
        .split('"')
        .nth(1)
        .unwrap()
        .to_string();
    p.up(1);

    // A good write is applied and acknowledged.
    let mut s = impostor(&p, &addr);
    s.write_all(
        &Frame::Data {
            seq: 1,
            offset: 0,
            data: vec![0xab; 4096].into(),
        }
        .encode(),
    )
    .unwrap();
    assert_eq!(
        read_frame(&mut s).unwrap().0,
        Frame::Ack { seq: 1, status: 0 }
    );
    assert_eq!(image_block(&p, 0), vec![0xab; 4096]);

    // Truncated: the header announces 4 KiB of data, 1 KiB arrives, then the link dies.
    let full = Frame::Data {
        seq: 2,
        offset: 8192,
        data: vec![0xcd; 4096].into(),
    }
    .encode();
    s.write_all(&full[..1024 + 12]).unwrap();
    drop(s);
    wait_for("disconnect logged", LONG, || {
        p.log(1).contains("peer closed the connection")
    });
    assert_eq!(
        image_block(&p, 8192),
        vec![0u8; 4096],
        "half a write was applied"
    );

    // Garbage instead of a frame.
    let mut s = impostor(&p, &addr);
    s.write_all(b"GET / HTTP/1.0\r\n\r\n").unwrap();
    wait_for("bad magic logged", LONG, || {
        p.log(1).contains("malformed frame: bad magic")
    });
    drop(s);

    // A frame whose inner data length disagrees with the frame length.
    let mut s = impostor(&p, &addr);
    let mut bad = Frame::Data {
        seq: 3,
        offset: 16384,
        data: vec![0xee; 4096].into(),
    }
    .encode();
    bad[12 + 16 + 3] ^= 1; // the data length field
    s.write_all(&bad).unwrap();
    wait_for("length mismatch logged", LONG, || {
        p.log(1).contains("data length does not match the frame")
    });
    assert_eq!(image_block(&p, 16384), vec![0u8; 4096]);
    drop(s);

    // A write beyond the device.
    let mut s = impostor(&p, &addr);
    s.write_all(
        &Frame::Data {
            seq: 4,
            offset: 1 << 40,
            data: vec![1; 4096].into(),
        }
        .encode(),
    )
    .unwrap();
    wait_for("range error logged", LONG, || {
        p.log(1).contains("request beyond the device")
    });
    drop(s);

    // The daemon still serves.
    let st = p.status(1);
    assert_eq!(st["name"], "r0", "{st}");
    assert_eq!(image_block(&p, 0), vec![0xab; 4096]);
}

#[test]
fn config_errors_name_file_line_and_key() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = dir.path().join("r.toml");
    std::fs::write(
        &cfg,
        "[resource]\nname = \"r0\"\nshared_secret = \"x\"\n[[node]]\nname = \"a\"\naddress = \"198.51.100.1:7789\"\ndisk = \"/nonexistent/a.img\"\n[[node]]\nname = \"b\"\naddress = \"198.51.100.2\"\ndisk = \"/nonexistent/b.img\"\n",
    )
    .unwrap();
    let o = run(&[
        bin(),
        "-c",
        cfg.to_str().unwrap(),
        "--node",
        "a",
        "check-config",
    ]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!(
            "{}:10: node.b.address: '198.51.100.2'",
            cfg.display()
        )),
        "{err}"
    );
    std::fs::write(
        &cfg,
        "[resource]\nname = \"r0\"\nshared_secret = \"x\"\nflavour = 1\n",
    )
    .unwrap();
    let o = run(&[
        bin(),
        "-c",
        cfg.to_str().unwrap(),
        "--node",
        "a",
        "check-config",
    ]);
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        err.contains(&format!("{}:4: unknown field `flavour`", cfg.display())),
        "{err}"
    );
    // A missing disk is named at `up`.
    std::fs::write(
        &cfg,
        "[resource]\nname = \"r0\"\nshared_secret = \"x\"\n[[node]]\nname = \"a\"\naddress = \"127.0.0.1:1\"\ndisk = \"/nonexistent/a.img\"\n[[node]]\nname = \"b\"\naddress = \"127.0.0.1:2\"\ndisk = \"/nonexistent/b.img\"\n",
    )
    .unwrap();
    let o = run(&[bin(), "-c", cfg.to_str().unwrap(), "--node", "a", "up"]);
    assert!(!o.status.success());
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(err.contains("/nonexistent/a.img: No such file"), "{err}");
}
