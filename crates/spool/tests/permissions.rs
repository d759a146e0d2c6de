mod common;

use std::fs;
use std::os::unix::fs::PermissionsExt;

use ironpost_spool::{Spool, SpoolConfig, SpoolError};

fn set_mode(path: &std::path::Path, mode: u32) {
    fs::set_permissions(path, fs::Permissions::from_mode(mode)).unwrap();
}

#[test]
fn world_accessible_directory_is_refused_naming_path_and_mode() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("spool");
    fs::create_dir(&dir).unwrap();
    set_mode(&dir, 0o777);
    let err = Spool::open(SpoolConfig::new(&dir)).unwrap_err();
    match &err {
        SpoolError::InsecurePermissions { path, mode } => {
            assert_eq!(path, &dir);
            assert_eq!(*mode, 0o777);
        }
        other => panic!("expected InsecurePermissions, got {other}"),
    }
    let msg = err.to_string();
    assert!(msg.contains(&dir.display().to_string()), "{msg}");
    assert!(msg.contains("0777"), "{msg}");

    // Any "other" bit is enough to refuse, even read-only.
    set_mode(&dir, 0o704);
    assert!(matches!(
        Spool::open(SpoolConfig::new(&dir)),
        Err(SpoolError::InsecurePermissions { mode: 0o704, .. })
    ));
    // Group access is fine.
    set_mode(&dir, 0o750);
    Spool::open(SpoolConfig::new(&dir)).unwrap();
}

#[test]
fn missing_directory_is_created_private_and_setgid() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("var").join("spool").join("ironpost");
    let (spool, _) = Spool::open(SpoolConfig::new(&dir)).unwrap();
    assert_eq!(spool.path(), dir);
    let mode = fs::metadata(&dir).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o2770, "mode is {mode:o}");
    let seg = common::segment_path(&dir, 1);
    let seg_mode = fs::metadata(&seg).unwrap().permissions().mode() & 0o777;
    assert_eq!(seg_mode & 0o007, 0, "segment mode {seg_mode:o}");
}

#[test]
fn a_file_in_place_of_the_directory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("spool");
    fs::write(&path, b"").unwrap();
    let err = Spool::open(SpoolConfig::new(&path)).unwrap_err();
    assert!(matches!(err, SpoolError::NotADirectory { .. }), "{err}");
    assert!(err.to_string().contains(&path.display().to_string()));
}
