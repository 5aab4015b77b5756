//! Torn cuts: each unsynced page and name survives with probability 1/2.

use std::collections::BTreeSet;

use super::*;

/// Builds a durable empty file "wal" and writes 1 MiB of non-zero bytes to it,
/// unsynced.
fn torn_setup() -> (Model, u64, Vec<u8>) {
    let mut m = model();
    let ino = durable_file(&mut m, "wal", b"");
    let data = pattern(1 << 20, 7);
    write_at(&mut m, ino, 0, &data);
    (m, ino, data)
}

#[test]
fn torn_cut_keeps_some_pages_and_leaves_holes_before_surviving_data() {
    let (mut m, ino, data) = torn_setup();
    // Seed 2 keeps the current size (checked below): with a seed that drops it the
    // file would simply be empty.
    let report = m.cut(CutMode::Torn { seed: 2 });
    assert_eq!(m.getattr(ino).unwrap().size, 1 << 20, "{report:?}");
    let after = contents(&mut m, "wal").unwrap();
    let pages: Vec<bool> = after
        .chunks(PAGE_SIZE)
        .zip(data.chunks(PAGE_SIZE))
        .map(|(got, written)| {
            if got == written {
                true
            } else {
                assert!(got.iter().all(|&b| b == 0), "a lost page reads as zeros");
                false
            }
        })
        .collect();
    let kept = pages.iter().filter(|&&kept| kept).count() as u64;
    assert_eq!(kept, report.pages_kept);
    assert_eq!(256 - kept, report.pages_dropped);
    assert!(kept > 64 && kept < 192, "about half survive: {kept}");
    // A hole before data that survived: what an fsync-less append can leave on disk.
    let first_hole = pages.iter().position(|&kept| !kept).unwrap();
    assert!(pages[first_hole..].iter().any(|&kept| kept));
    check(&m);

    // Reproducible: the same seed on the same state tears the same way.
    let (mut again, _, _) = torn_setup();
    assert_eq!(again.cut(CutMode::Torn { seed: 2 }), report);
    assert_eq!(contents(&mut again, "wal").unwrap(), after);
}

#[test]
fn torn_cut_size_is_durable_or_current() {
    let mut sizes = BTreeSet::new();
    for seed in 0..16 {
        let (mut m, ino, _) = torn_setup();
        m.cut(CutMode::Torn { seed });
        sizes.insert(m.getattr(ino).unwrap().size);
        check(&m);
    }
    assert_eq!(sizes, BTreeSet::from([0, 1 << 20]));
}

#[test]
fn torn_cut_keeps_some_but_not_all_new_names() {
    let mut m = model();
    for i in 0..64 {
        create(&mut m, &format!("f{i}"));
    }
    let report = m.cut(CutMode::Torn { seed: 9 });
    let left = names(&mut m, "").len() as u64;
    assert_eq!(left, report.dir_entries_kept);
    assert_eq!(64 - left, report.inodes_dropped);
    assert!(left > 10 && left < 54, "{report:?}");
    check(&m);
}

#[test]
fn torn_cut_zeroes_the_tail_past_the_durable_size() {
    // Durable: 100 bytes. Unsynced: the same page extended to 3000 bytes.
    for seed in 0..32 {
        let mut m = model();
        let ino = durable_file(&mut m, "f", &[1; 100]);
        write_at(&mut m, ino, 100, &[2; 2900]);
        m.cut(CutMode::Torn { seed });
        let got = contents(&mut m, "f").unwrap();
        match got.len() {
            100 => assert_eq!(got, [1; 100]),
            3000 => assert!(
                got[..100] == [1; 100] && (got[100..] == [2; 2900] || got[100..] == [0; 2900])
            ),
            other => panic!("size {other}"),
        }
        // Re-extending past the size shows zeros, never the dropped bytes.
        let grow = SetAttr {
            size: Some(4096),
            ..SetAttr::default()
        };
        m.setattr(ino, grow).unwrap();
        let got_len = got.len();
        assert!(contents(&mut m, "f").unwrap()[got_len..]
            .iter()
            .all(|&b| b == 0));
        check(&m);
    }
}
