//! Hostile input for the MIME walker: arbitrary bytes and deep or wide
//! structures must give a result or a clear rejection, never a panic.

use kxca_provisioner::mail::mime::{read, Limits, MimeError};
use proptest::prelude::*;

fn nested(depth: usize) -> Vec<u8> {
    let mut m = String::from("From: a@example.jp\r\nSubject: bomb\r\n");
    for i in 0..depth {
        m.push_str(&format!(
            "Content-Type: multipart/mixed; boundary=\"b{i}\"\r\n\r\n--b{i}\r\n"
        ));
    }
    m.push_str("Content-Type: text/plain\r\n\r\nx\r\n");
    for i in (0..depth).rev() {
        m.push_str(&format!("--b{i}--\r\n"));
    }
    m.into_bytes()
}

#[test]
fn deep_nesting_is_rejected() {
    let err = read(&nested(100), &Limits::default()).unwrap_err();
    assert_eq!(err, MimeError::TooDeep { limit: 12 });
}

#[test]
fn thousands_of_parts_are_rejected() {
    let mut m =
        String::from("From: a@example.jp\r\nContent-Type: multipart/mixed; boundary=\"b\"\r\n\r\n");
    for _ in 0..5000 {
        m.push_str("--b\r\nContent-Type: application/octet-stream\r\n\r\nPK\x03\x04\r\n");
    }
    m.push_str("--b--\r\n");
    let err = read(m.as_bytes(), &Limits::default()).unwrap_err();
    assert_eq!(err, MimeError::TooManyParts { limit: 200 });
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..4096)) {
        let _ = read(&bytes, &Limits::default());
    }

    #[test]
    fn arbitrary_nesting_never_panics(depth in 0usize..64) {
        match read(&nested(depth), &Limits::default()) {
            Ok(_) | Err(MimeError::TooDeep { .. }) => {}
            Err(e) => prop_assert!(false, "unexpected {e}"),
        }
    }
}
