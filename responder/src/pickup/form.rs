//! The `application/x-www-form-urlencoded` body of `POST /pickup`. The code
//! and both passwords are kept in wiped-on-drop buffers and never shown,
//! logged or echoed back.

use kxca_ca::Password;
use zeroize::Zeroizing;

use super::Notice;

/// A checked form. `password` is taken by the handler.
pub(crate) struct Form {
    pub certificate_id: String,
    pub code: Zeroizing<String>,
    pub password: Option<Password>,
    /// `format=legacy`: PBE-SHA1-3DES for old Windows.
    pub legacy: bool,
}

/// Fields of the form, as labelled on the page.
const CERTIFICATE_ID: &str = "証明書ID";
const CODE: &str = "受け取り用パスワード";
const PASSWORD: &str = "証明書ファイルのパスワード";
const CONFIRM: &str = "証明書ファイルのパスワード（確認）";

impl Form {
    /// Parses and checks the body. A refusal comes with what could be
    /// read of the form (the certificate id and format), to show again.
    pub(crate) fn parse(body: &[u8]) -> Result<Form, (Notice, Form)> {
        let mut certificate_id: Option<String> = None;
        let mut code: Option<Zeroizing<String>> = None;
        let mut password: Option<Zeroizing<String>> = None;
        let mut confirm: Option<Zeroizing<String>> = None;
        let mut format: Option<String> = None;
        let mut duplicate = false;
        for (k, v) in form_urlencoded::parse(body) {
            // Owned at once into a wiped buffer: the decoded value may be
            // a secret.
            let v = Zeroizing::new(v.into_owned());
            let slot_taken = match k.as_ref() {
                "certificate_id" => certificate_id.replace(v.to_string()).is_some(),
                "code" => code.replace(v).is_some(),
                "password" => password.replace(v).is_some(),
                "password_confirm" => confirm.replace(v).is_some(),
                "format" => format.replace(v.to_string()).is_some(),
                // Unknown fields (a browser's extras) are ignored.
                _ => false,
            };
            duplicate |= slot_taken;
        }
        let certificate_id =
            kxca_ca::rules::code_text(certificate_id.as_deref().unwrap_or("")).to_ascii_uppercase();
        let legacy = format.as_deref() == Some("legacy");
        let partial = |notice: Notice, certificate_id: &str| {
            Err((
                notice,
                Form {
                    certificate_id: if certificate_id.len() <= 64 {
                        certificate_id.to_string()
                    } else {
                        String::new()
                    },
                    code: Zeroizing::new(String::new()),
                    password: None,
                    legacy,
                },
            ))
        };
        if duplicate {
            return partial(Notice::BadFormat, &certificate_id);
        }
        if certificate_id.is_empty() {
            return partial(Notice::Missing(CERTIFICATE_ID), "");
        }
        if certificate_id.len() > 64 || !certificate_id.bytes().all(|b| b.is_ascii_alphanumeric()) {
            return partial(Notice::BadCertificateId, "");
        }
        let code = match code {
            Some(c) if !c.trim().is_empty() => c,
            _ => return partial(Notice::Missing(CODE), &certificate_id),
        };
        let Some(password) = password.filter(|p| !p.is_empty()) else {
            return partial(Notice::Missing(PASSWORD), &certificate_id);
        };
        let Some(confirm) = confirm.filter(|p| !p.is_empty()) else {
            return partial(Notice::Missing(CONFIRM), &certificate_id);
        };
        match format.as_deref() {
            None | Some("") | Some("modern") | Some("legacy") => {}
            Some(_) => return partial(Notice::BadFormat, &certificate_id),
        }
        let Ok(password) = Password::from_operator(password.as_str().to_owned()) else {
            return partial(Notice::PasswordRule, &certificate_id);
        };
        if !password.matches(&confirm) {
            return partial(Notice::PasswordMismatch, &certificate_id);
        }
        Ok(Form {
            certificate_id,
            code,
            password: Some(password),
            legacy,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn notice(body: &str) -> Notice {
        match Form::parse(body.as_bytes()) {
            Ok(_) => Notice::None,
            Err((n, _)) => n,
        }
    }

    #[test]
    fn the_form_is_checked_before_any_code_is_tried() {
        let ok = "certificate_id=ti123&code=AAAA-CCCC&password=abcd1234&password_confirm=abcd1234";
        let f = Form::parse(ok.as_bytes()).ok().unwrap();
        assert_eq!(f.certificate_id, "TI123");
        assert!(!f.legacy);
        assert_eq!(f.code.as_str(), "AAAA-CCCC");
        assert_eq!(
            notice("certificate_id=TI1&code=x&password=abcd1234&password_confirm=abcd1235"),
            Notice::PasswordMismatch
        );
        assert_eq!(
            notice("certificate_id=TI1&code=x&password=abc%21d1234&password_confirm=abc%21d1234"),
            Notice::PasswordRule
        );
        assert_eq!(
            notice("certificate_id=TI1&code=x&password=abc&password_confirm=abc"),
            Notice::PasswordRule
        );
        assert_eq!(
            notice("certificate_id=TI1&password=abcd1234&password_confirm=abcd1234"),
            Notice::Missing(CODE)
        );
        assert_eq!(
            notice("certificate_id=%3Cb%3E&code=x&password=abcd1234&password_confirm=abcd1234"),
            Notice::BadCertificateId
        );
        assert_eq!(notice(&format!("{ok}&format=pem")), Notice::BadFormat);
        assert_eq!(notice(&format!("{ok}&code=again")), Notice::BadFormat);
        let legacy = Form::parse(format!("{ok}&format=legacy").as_bytes())
            .ok()
            .unwrap();
        assert!(legacy.legacy);
        // Full-width typing of the id is folded.
        let wide = "certificate_id=%EF%BC%B4%EF%BC%A9%EF%BC%91&code=x&password=abcd1234&password_confirm=abcd1234";
        assert_eq!(
            Form::parse(wide.as_bytes()).ok().unwrap().certificate_id,
            "TI1"
        );
    }
}
