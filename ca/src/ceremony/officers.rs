//! Security officers and dual control: the policy naming who may approve a
//! ceremony and how many must, their enrolment with an Argon2id-hashed
//! passphrase, and the check of a ceremony's approvals.

use std::collections::BTreeSet;
use std::path::PathBuf;

use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use argon2::Argon2;
use rusqlite::{params, OptionalExtension};
use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use serde_json::json;

use crate::store::{audit, sql, Snapshot, Tx};
use crate::{AuditAction, Error, Home, Store};

/// Shortest passphrase an officer may enrol with. Argon2id slows guessing,
/// but a short passphrase is still found by the few guesses it allows.
pub const MIN_PASSPHRASE_CHARS: usize = 12;

/// `policies/ceremony.toml`: who the security officers are and how many of
/// them must approve a ceremony.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CeremonyPolicy {
    /// M: distinct officers whose approval a ceremony needs.
    pub required: usize,
    /// N: the officers who may approve, by login-like name.
    pub officers: Vec<String>,
    #[serde(skip)]
    /// The file it was read from, for error messages.
    pub path: PathBuf,
}

impl CeremonyPolicy {
    /// `<home>/policies/ceremony.toml`.
    pub fn path(home: &Home) -> PathBuf {
        home.policies().join("ceremony.toml")
    }

    /// Loads and checks the policy: dual control means at least two.
    pub fn load(home: &Home) -> Result<CeremonyPolicy, Error> {
        let path = Self::path(home);
        let bad = |message: String| Error::Policy {
            path: path.clone(),
            message,
        };
        let text = std::fs::read_to_string(&path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                bad("missing: ceremonies need a list of security officers and how many must approve (required = 2, officers = [\"...\", ...]); see docs/CEREMONIES.md".into())
            } else {
                Error::io(&path, e)
            }
        })?;
        let mut policy: CeremonyPolicy =
            toml::from_str(&text).map_err(|e| bad(e.to_string().trim().replace('\n', " ")))?;
        policy.path = path.clone();
        if policy.required < 2 {
            return Err(bad(format!(
                "required = {}: dual control needs at least 2 officers per ceremony",
                policy.required
            )));
        }
        let mut seen = BTreeSet::new();
        for name in &policy.officers {
            check_name(name).map_err(&bad)?;
            if !seen.insert(name.as_str()) {
                return Err(bad(format!("officer {name:?} is listed twice")));
            }
        }
        if policy.required > policy.officers.len() {
            return Err(bad(format!(
                "required = {} but only {} officers are listed",
                policy.required,
                policy.officers.len()
            )));
        }
        Ok(policy)
    }
}

fn check_name(name: &str) -> Result<(), String> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, '.' | '_' | '-'));
    if ok {
        Ok(())
    } else {
        Err(format!(
            "officer name {name:?}: use 1 to 64 of a-z, 0-9, '.', '_', '-'"
        ))
    }
}

/// An officer's name and passphrase, as given for one ceremony.
pub struct Approval {
    /// The officer's name, as listed in the policy.
    pub officer: String,
    /// The passphrase they typed; compared with their Argon2id hash only.
    pub passphrase: SecretString,
}

impl std::fmt::Debug for Approval {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Approval")
            .field("officer", &self.officer)
            .finish_non_exhaustive()
    }
}

pub(crate) fn stored_hash(conn: &Snapshot<'_>, name: &str) -> Result<Option<String>, Error> {
    conn.query_row("SELECT phc FROM officers WHERE name = ?1", [name], |r| {
        r.get(0)
    })
    .optional()
    .map_err(sql)
}

/// Officers enrolled so far, by name.
pub fn enrolled(store: &Store) -> Result<Vec<String>, Error> {
    store.read(|c| {
        let mut stmt = c
            .prepare("SELECT name FROM officers ORDER BY name")
            .map_err(sql)?;
        let rows = stmt.query_map([], |r| r.get(0)).map_err(sql)?;
        rows.collect::<Result<Vec<String>, _>>().map_err(sql)
    })
}

/// Enrols an officer listed in the policy: the passphrase is kept only as
/// an Argon2id PHC string; an officer already enrolled is refused (a
/// forgotten passphrase is replaced in a ceremony, not by overwriting).
///
/// Once `required` officers are enrolled, a new one needs `required`
/// enrolled officers' approvals too: otherwise one person could list a
/// second name and approve every ceremony alone.
pub fn enrol(
    store: &mut Store,
    home: &Home,
    name: &str,
    passphrase: &SecretString,
    approvals: &[Approval],
    actor: &str,
    now: i64,
) -> Result<Vec<String>, Error> {
    let policy = CeremonyPolicy::load(home)?;
    if !policy.officers.iter().any(|o| o == name) {
        return Err(Error::Policy {
            path: policy.path.clone(),
            message: format!(
                "{name:?} is not a security officer listed here (officers: {}); a security officer adds the name first",
                policy.officers.join(", ")
            ),
        });
    }
    if passphrase.expose_secret().chars().count() < MIN_PASSPHRASE_CHARS {
        return Err(Error::field(
            "passphrase",
            format!("officer {name}: at least {MIN_PASSPHRASE_CHARS} characters"),
        ));
    }
    if store.read(|c| stored_hash(c, name))?.is_some() {
        return Err(Error::field(
            "officer",
            format!("{name} is already enrolled"),
        ));
    }
    let already = enrolled(store)?
        .into_iter()
        .filter(|o| policy.officers.contains(o))
        .count();
    let approvers = if already >= policy.required {
        if approvals.is_empty() {
            return Err(Error::Policy {
                path: policy.path.clone(),
                message: format!(
                    "{already} officers are enrolled: enrolling {name} needs the approval of {} of them (--approve NAME=PASSPHRASE_FILE, or on the terminal); nothing was done",
                    policy.required
                ),
            });
        }
        verify_approvals(store, &policy, approvals)?
    } else {
        // The first officers enrol on their own: there is nobody yet to
        // approve them (the home's set-up, itself audited).
        Vec::new()
    };
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| Error::Random {
        what: "officer passphrase salt".into(),
        message: e.to_string(),
    })?;
    let phc = Argon2::default()
        .hash_password_with_salt(passphrase.expose_secret().as_bytes(), &salt)
        .map_err(|e| Error::Password(format!("hashing officer {name}'s passphrase: {e}")))?
        .to_string();
    store.write(|tx| {
        if stored_hash(tx, name)?.is_some() {
            return Err(Error::field(
                "officer",
                format!("{name} is already enrolled"),
            ));
        }
        insert(tx, name, &phc, now, actor)?;
        audit::append(
            tx,
            now,
            actor,
            AuditAction::OfficerEnrol,
            None,
            json!({"officer": name, "hash": "argon2id", "approved_by": approvers}),
        )
    })?;
    Ok(approvers)
}

fn insert(tx: &Tx<'_>, name: &str, phc: &str, now: i64, actor: &str) -> Result<(), Error> {
    tx.execute(
        "INSERT INTO officers (name, phc, enrolled_at, enrolled_by) VALUES (?1, ?2, ?3, ?4)",
        params![name, phc, now, actor],
    )
    .map_err(sql)?;
    Ok(())
}

/// Checks a ceremony's approvals against the policy and the enrolled
/// hashes, before anything is touched. Returns the approving officers.
/// Refused: an officer not in the policy or not enrolled, a wrong
/// passphrase, the same officer twice, fewer than `required`.
pub fn verify_approvals(
    store: &Store,
    policy: &CeremonyPolicy,
    approvals: &[Approval],
) -> Result<Vec<String>, Error> {
    let refuse = |message: String| Error::Policy {
        path: policy.path.clone(),
        message: format!("{message}; nothing was done"),
    };
    let mut approved: Vec<String> = Vec::new();
    for a in approvals {
        if !policy.officers.contains(&a.officer) {
            return Err(refuse(format!(
                "{:?} is not a security officer (officers: {})",
                a.officer,
                policy.officers.join(", ")
            )));
        }
        if approved.contains(&a.officer) {
            return Err(refuse(format!(
                "officer {} approved twice: one officer counts once (dual control needs {} distinct officers)",
                a.officer, policy.required
            )));
        }
        let Some(phc) = store.read(|c| stored_hash(c, &a.officer))? else {
            return Err(refuse(format!(
                "officer {} is not enrolled (kxca officer add {})",
                a.officer, a.officer
            )));
        };
        let parsed =
            argon2::password_hash::phc::PasswordHash::new(&phc).map_err(|e| Error::Database {
                path: store.path().to_path_buf(),
                message: format!("officers.phc of {}: {e}", a.officer),
            })?;
        if Argon2::default()
            .verify_password(a.passphrase.expose_secret().as_bytes(), &parsed)
            .is_err()
        {
            return Err(refuse(format!("officer {}: wrong passphrase", a.officer)));
        }
        approved.push(a.officer.clone());
    }
    if approved.len() < policy.required {
        return Err(refuse(format!(
            "{} of {} required officer approvals ({}); a ceremony needs {} distinct security officers of {}",
            approved.len(),
            policy.required,
            if approved.is_empty() {
                "none".to_string()
            } else {
                approved.join(", ")
            },
            policy.required,
            policy.officers.len()
        )));
    }
    Ok(approved)
}

#[cfg(test)]
mod tests {
    use super::CeremonyPolicy;
    use crate::Home;

    fn load(text: &str) -> Result<CeremonyPolicy, String> {
        let dir = tempfile::tempdir().unwrap();
        let home = Home::new(dir.path());
        std::fs::create_dir_all(home.policies()).unwrap();
        std::fs::write(CeremonyPolicy::path(&home), text).unwrap();
        CeremonyPolicy::load(&home).map_err(|e| e.to_string())
    }

    #[test]
    fn dual_control_is_at_least_two_distinct_listed_officers() {
        let ok = load("required = 2\nofficers = [\"a\", \"b\", \"c\"]\n").unwrap();
        assert_eq!((ok.required, ok.officers.len()), (2, 3));
        for (text, expected) in [
            ("required = 1\nofficers = [\"a\", \"b\"]\n", "at least 2"),
            (
                "required = 3\nofficers = [\"a\", \"b\"]\n",
                "only 2 officers",
            ),
            ("required = 2\nofficers = [\"a\", \"a\"]\n", "listed twice"),
            (
                "required = 2\nofficers = [\"a\", \"B c\"]\n",
                "officer name",
            ),
            (
                "required = 2\nofficers = [\"a\", \"b\"]\nquorum = 1\n",
                "quorum",
            ),
        ] {
            let err = load(text).unwrap_err();
            assert!(err.contains(expected), "{text}: {err}");
        }
        let dir = tempfile::tempdir().unwrap();
        let err = CeremonyPolicy::load(&Home::new(dir.path())).unwrap_err();
        assert!(err.to_string().contains("missing"), "{err}");
    }
}
