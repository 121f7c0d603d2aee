//! A store written by a kxca that kept received forms whole: the upgrade
//! migration removes every stored file (and its password) from the
//! database file and the WAL, keeping what an auditor needs.

use kxca_ca::Store;

const PASSWORD: &[u8] = b"Typed-Passw0rd-4417";

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

#[test]
fn upgrade_scrubs_forms_stored_whole_from_the_file_and_the_wal() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("kxca.db");
    // A received .xls as the old intake stored it: OLE2 magic, the
    // password somewhere in its bytes, large enough for overflow pages.
    let mut file = vec![0xD0, 0xCF, 0x11, 0xE0, 0xA1, 0xB1, 0x1A, 0xE1];
    file.extend(std::iter::repeat_n(0x20u8, 9000));
    file.extend_from_slice(PASSWORD);
    file.extend(std::iter::repeat_n(0x20u8, 9000));
    let size = file.len() as i64;
    {
        let mut store = Store::open(&path, true).unwrap();
        // The schema as the previous release left it.
        store
            .migrate(
                "provisioner",
                &kxca_provisioner::applications::migrations()[..1],
            )
            .unwrap();
        store
            .write(|tx| {
                tx.execute(
                    "INSERT INTO intake_mails (id, source_key, message_id, subject, received_at, outcome, detail, created_at)
                     VALUES (1, 'k', 'm@x', 's', 0, 'processed', '{}', 0)",
                    [],
                )
                .unwrap();
                tx.execute(
                    "INSERT INTO applications (mail_id, message_id, received_at, file_name, sha256, file, sheet, report, status, rows_valid, rows_review, rows_invalid, created_at)
                     VALUES (1, 'm@x', 0, 'form.xls', 'abc', ?1, 'sheet', '{}', 'pending_review', 1, 0, 0, 0)",
                    [&file],
                )
                .unwrap();
                Ok(())
            })
            .unwrap();
    }
    // Force the form into the main file too, as a long-running store has.
    {
        let c = rusqlite::Connection::open(&path).unwrap();
        c.query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |_| Ok(()))
            .unwrap();
    }
    assert!(contains(&std::fs::read(&path).unwrap(), PASSWORD));

    // A reader holding the store open keeps the WAL on disk, as `kxca
    // serve` does while a command upgrades.
    let reader = rusqlite::Connection::open(&path).unwrap();
    reader
        .query_row("SELECT count(*) FROM applications", [], |r| {
            r.get::<_, i64>(0)
        })
        .unwrap();
    {
        let mut store = Store::open(&path, false).unwrap();
        kxca_provisioner::migrate(&mut store).unwrap();
        let apps = store
            .read(|c| kxca_provisioner::applications::list(c, 10))
            .unwrap();
        assert_eq!(apps.len(), 1);
        assert_eq!(apps[0].size, size, "the original size is kept");
        assert_eq!(apps[0].original_format.as_deref(), Some("xls"));
        assert_eq!(apps[0].stored_format, "none");
        assert_eq!(apps[0].sha256, "abc");
        let (_, kept) = store
            .read(|c| kxca_provisioner::applications::file(c, apps[0].id))
            .unwrap()
            .unwrap();
        assert!(kept.is_empty());
    }
    for suffix in ["", "-wal", "-shm"] {
        let p = dir.path().join(format!("kxca.db{suffix}"));
        if let Ok(bytes) = std::fs::read(&p) {
            assert!(
                !contains(&bytes, PASSWORD),
                "the password is still in {}",
                p.display()
            );
        }
    }
    drop(reader);
}
