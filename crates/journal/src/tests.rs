use super::*;

fn root() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

/// A temp root holding the file "knob" (its content `value`) and the journal root "j".
fn knob(value: &str) -> (tempfile::TempDir, PathBuf, PathBuf) {
    let r = root();
    let target = r.path().join("knob");
    std::fs::write(&target, value).unwrap();
    let jroot = r.path().join("j");
    (r, target, jroot)
}

#[test]
fn file_change_is_undone_and_journal_removed() {
    let (_r, target, jroot) = knob("950000\n");
    let mut j = Journal::create(&jroot, "t1").unwrap();
    j.write_file(&target, "-1").unwrap();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "-1");
    let jp = j.path().to_path_buf();
    j.undo().unwrap();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "950000\n");
    assert!(!jp.exists());
}

#[test]
fn undo_runs_in_reverse_and_first_old_value_wins() {
    let (r, target, jroot) = knob("a\n");
    let mut j = Journal::create(&jroot, "t2").unwrap();
    j.write_file(&target, "b").unwrap();
    j.write_file(&target, "c").unwrap();
    let dir = r.path().join("cg");
    j.create_dir(&dir).unwrap();
    j.undo().unwrap();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "a\n");
    assert!(!dir.exists());
}

#[test]
fn same_value_records_nothing() {
    let (_r, target, jroot) = knob("1\n");
    let mut j = Journal::create(&jroot, "t3").unwrap();
    j.write_file(&target, "1").unwrap();
    assert!(j.changes().is_empty());
    j.undo().unwrap();
}

#[test]
fn orphan_of_dead_holder_is_restored_and_live_one_is_kept() {
    let (r, target, jroot) = knob("old\n");
    // A holder that has exited: a child we reaped.
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = ProcessId::of(child.id() as i32).unwrap();
    child.wait().unwrap();
    let mut j = Journal::create_held_by(&jroot, "crashed", dead).unwrap();
    j.write_file(&target, "new").unwrap();
    std::mem::forget(j); // as if the process died: nothing undone
    let mut live = Journal::create(&jroot, "live").unwrap();
    live.create_dir(r.path().join("keep")).unwrap();
    let restored = restore_orphans(&jroot, None);
    assert_eq!(restored.len(), 1);
    assert_eq!(restored[0].owner, "crashed");
    assert!(restored[0].result.is_ok());
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "old\n");
    assert!(r.path().join("keep").exists());
    live.undo().unwrap();
}

#[test]
fn failures_are_all_reported_and_kept_for_retry() {
    let r = root();
    let jroot = r.path().join("j");
    let mut j = Journal::create(&jroot, "fail").unwrap();
    let nonempty = r.path().join("d");
    j.create_dir(&nonempty).unwrap();
    std::fs::write(nonempty.join("f"), "x").unwrap();
    j.record(Change::Link {
        name: "x".into(),
        netns: None,
    })
    .unwrap();
    let path = j.path().to_path_buf();
    let err = j.undo().unwrap_err();
    match err {
        Error::Undo(u) => assert_eq!(u.failures.len(), 2),
        e => panic!("{e}"),
    }
    let again = Journal::load(&path).unwrap();
    assert_eq!(again.changes().len(), 2);
    std::fs::remove_file(nonempty.join("f")).unwrap();
    std::fs::remove_file(&path).unwrap();
    std::fs::remove_dir(&nonempty).unwrap();
}

#[test]
fn torn_last_line_is_skipped() {
    let (_r, target, jroot) = knob("old\n");
    let mut j = Journal::create(&jroot, "torn").unwrap();
    j.write_file(&target, "new").unwrap();
    let path = j.path().to_path_buf();
    std::mem::forget(j);
    let mut f = OpenOptions::new().append(true).open(&path).unwrap();
    write!(f, "{{\"kind\":\"fi").unwrap();
    let j = Journal::load(&path).unwrap();
    assert_eq!(j.changes().len(), 1);
    j.undo().unwrap();
    assert_eq!(std::fs::read_to_string(&target).unwrap(), "old\n");
}

#[test]
fn process_change_stops_the_process() {
    let r = root();
    let child = std::process::Command::new("sleep")
        .arg("30")
        .spawn()
        .unwrap();
    let id = ProcessId::of(child.id() as i32).unwrap();
    let mut j = Journal::create(r.path().join("j"), "proc").unwrap();
    j.record(Change::Process { id, grace_ms: 1000 }).unwrap();
    // Reap in a thread: the pidfd becomes readable on exit, before reaping.
    let h = std::thread::spawn(move || {
        let mut child = child;
        child.wait().unwrap()
    });
    j.undo().unwrap();
    let status = h.join().unwrap();
    assert!(!status.success());
}

#[test]
fn cpu_list_parses() {
    assert_eq!(change_parse("0-2,5"), vec![0, 1, 2, 5]);
    assert!(crate::change::tests_parse("3-1").is_err());
    assert!(crate::change::tests_parse("1023").is_ok());
    assert!(crate::change::tests_parse("0,1024").is_err());
}

fn change_parse(s: &str) -> Vec<usize> {
    crate::change::tests_parse(s).unwrap()
}

#[test]
fn concurrent_restorers_undo_an_orphan_once() {
    let r = root();
    let jroot = r.path().join("j");
    let counter = r.path().join("appended");
    let mut child = std::process::Command::new("true").spawn().unwrap();
    let dead = ProcessId::of(child.id() as i32).unwrap();
    child.wait().unwrap();
    let mut j = Journal::create_held_by(&jroot, "twice", dead).unwrap();
    // A WriteBack appends nothing, so count undos through a file the undo recreates: each undo
    // of CreatedFile removes it; we instead count journals reported restored.
    j.record(Change::CreatedFile {
        path: counter.clone(),
    })
    .unwrap();
    std::mem::forget(j);
    let a = std::thread::spawn({
        let jroot = jroot.clone();
        move || restore_orphans(&jroot, None)
    });
    let b = restore_orphans(&jroot, None);
    let a = a.join().unwrap();
    let restored: usize = [a, b]
        .iter()
        .flatten()
        .filter(|x| x.owner == "twice" && x.result.is_ok())
        .count();
    assert_eq!(
        restored, 1,
        "one restorer undoes the journal, the other skips it"
    );
    assert!(!journal_path(&jroot, "twice").exists());
}
