//! Which PKCS#11 failures a fresh session or a re-initialised library cures.
//!
//! HSM users lose most hours to sessions that die (token reset, network HSM
//! failover, another process finalising the library) and to software that
//! then needs a restart. Each failure is classified once here; the signer
//! heals what can be healed and retries once.

use cryptoki::error::{Error as CkError, RvError};

/// What to do after a failed PKCS#11 call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Cure {
    /// Drop the session (and the login with it) and open a new one.
    NewSession,
    /// Finalize and re-initialize the library, then open a new session.
    Reinitialize,
    /// Retrying will not help (wrong PIN, missing key, bad mechanism...).
    None,
}

pub(crate) fn cure(e: &CkError) -> Cure {
    let CkError::Pkcs11(rv, _) = e else {
        return Cure::None;
    };
    match rv {
        RvError::SessionHandleInvalid
        | RvError::SessionClosed
        | RvError::UserNotLoggedIn
        | RvError::OperationActive
        | RvError::OperationNotInitialized
        | RvError::ObjectHandleInvalid
        | RvError::KeyHandleInvalid => Cure::NewSession,
        RvError::CryptokiNotInitialized
        | RvError::DeviceError
        | RvError::DeviceRemoved
        | RvError::DeviceMemory
        | RvError::TokenNotPresent
        | RvError::TokenNotRecognized
        | RvError::SlotIdInvalid
        | RvError::GeneralError
        | RvError::FunctionFailed => Cure::Reinitialize,
        _ => Cure::None,
    }
}

/// One line for an operator: the CKR_ name and the call, not the
/// paragraph the PKCS#11 specification attaches to each code.
pub(crate) fn describe(e: &CkError) -> String {
    match e {
        CkError::Pkcs11(RvError::PinIncorrect, _) => "wrong PIN (CKR_PIN_INCORRECT)".into(),
        CkError::Pkcs11(RvError::PinLocked, _) => {
            "the user PIN is locked (CKR_PIN_LOCKED); the security officer must reset it".into()
        }
        CkError::Pkcs11(rv, function) => format!("{} in {function:?}", ckr_name(*rv)),
        CkError::LibraryLoading(l) => format!("cannot load the PKCS#11 module: {l}"),
        other => other.to_string(),
    }
}

fn ckr_name(rv: RvError) -> String {
    // RvError's Debug is the CamelCase form of the CKR_ constant.
    let camel = format!("{rv:?}");
    let mut out = String::from("CKR");
    for c in camel.chars() {
        if c.is_ascii_uppercase() {
            out.push('_');
        }
        out.push(c.to_ascii_uppercase());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use cryptoki::context::Function;

    #[test]
    fn session_faults_heal_and_pin_faults_do_not() {
        let e = |rv| CkError::Pkcs11(rv, Function::Sign);
        assert_eq!(cure(&e(RvError::SessionHandleInvalid)), Cure::NewSession);
        assert_eq!(cure(&e(RvError::UserNotLoggedIn)), Cure::NewSession);
        assert_eq!(
            cure(&e(RvError::CryptokiNotInitialized)),
            Cure::Reinitialize
        );
        assert_eq!(cure(&e(RvError::DeviceRemoved)), Cure::Reinitialize);
        assert_eq!(cure(&e(RvError::PinIncorrect)), Cure::None);
        assert_eq!(
            describe(&e(RvError::SessionHandleInvalid)),
            "CKR_SESSION_HANDLE_INVALID in Sign"
        );
    }
}
