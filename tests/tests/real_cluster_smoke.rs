//! Smoke test of the harness with ONLY real MooseFS components: real master,
//! two real chunkservers and a real mfsmount. Proves that configs, loopback
//! remap, mounting, tools and parsers work before any Antler daemon is involved.

use std::collections::BTreeSet;
use std::fs;
use std::time::Duration;

use antler_tests::*;

#[test]
fn real_cluster_smoke() {
    let _lock = cluster_lock();
    let mut c = Cluster::start_real_master();
    let cs0 = c.add_chunkserver(CsKind::Real);
    let cs1 = c.add_chunkserver(CsKind::Real);
    c.wait_chunkservers(2, Duration::from_secs(90));
    let ports: BTreeSet<u16> = [c.chunkserver_port(cs0), c.chunkserver_port(cs1)].into();

    let infos = c.chunkservers();
    assert_eq!(infos.iter().filter(|i| i.connected).count(), 2, "{infos:?}");
    assert_eq!(infos.iter().map(|i| i.port).collect::<BTreeSet<_>>(), ports);

    let mnt = c.mount();
    let dir = mnt.join("g2");
    fs::create_dir(&dir).unwrap();
    c.mfssetgoal(2, &dir, false);
    assert_eq!(parse_getgoal(&c.mfsgetgoal(&dir)), Some(2));

    let small = pattern_bytes(1, 3 << 20);
    let big = pattern_bytes(2, 70 << 20); // spans 2 chunks
    write_file_synced(&dir.join("small"), &small);
    write_file_synced(&dir.join("big"), &big);
    assert_eq!(parse_getgoal(&c.mfsgetgoal(&dir.join("big"))), Some(2));

    c.drop_caches();
    let mnt = c.remount();
    let dir = mnt.join("g2");
    c.drop_caches();

    assert_file_eq(&dir.join("small"), &small);
    assert_file_eq(&dir.join("big"), &big);
    assert_eq!(file_digest(&dir.join("big")), digest(&big));

    for (name, nchunks) in [("small", 1usize), ("big", 2)] {
        let p = dir.join(name);
        // replication may lag behind the write; poll generously
        let chunks = c.wait_copies(&p, 2, Duration::from_secs(300));
        assert_eq!(chunks.len(), nchunks, "{name}: {chunks:?}");
        let check = c.mfscheckfile(&p);
        assert!(all_chunks_have_copies(&check, 2), "{name}: {check}");
        assert_eq!(
            parse_checkfile(&check).get(&2).copied(),
            Some(nchunks as u64),
            "{name}: {check}"
        );
        let info = c.mfsfileinfo(&p);
        assert_eq!(copies_per_chunk(&info), vec![2; nchunks], "{name}: {info}");
        for ch in parse_fileinfo(&info) {
            assert_eq!(ch.valid_ports(), ports, "{name} chunk {}: {info}", ch.index);
        }
        assert_eq!(ports_holding_data(&info), ports);
    }

    // chunk files really are in both chunkservers' hdd dirs (3 chunks each)
    for i in [cs0, cs1] {
        assert_eq!(c.chunk_files(i).len(), 3, "cs{i}: {:?}", c.chunk_files(i));
    }
    c.assert_alive();
}
