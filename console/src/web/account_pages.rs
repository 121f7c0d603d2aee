//! Account search, an account's page and its actions (reset, revoke,
//! renew a pickup, resend mail 1), each behind a confirmation page.

use super::*;

/// The revocation reasons an admin chooses from, by their RFC 5280 names;
/// their words are live.rs's (one table for every page).
pub(super) const REASONS: &[&str] = &[
    "cessationOfOperation",
    "affiliationChanged",
    "keyCompromise",
    "superseded",
    "unspecified",
];

/// (name, words) of each reason an admin chooses from.
fn reason_choices() -> Vec<(&'static str, String)> {
    REASONS
        .iter()
        .map(|r| (*r, super::live::reason_name_ja(r)))
        .collect()
}

pub(super) fn state_ja(state: accounts::register::AccountState) -> &'static str {
    match state {
        accounts::register::AccountState::Active => "有効",
        accounts::register::AccountState::Revoked => "失効済み",
    }
}

pub(super) fn cert_state_ja(state: &str) -> String {
    match state {
        "issued" => "有効".to_string(),
        "revoked" => "失効".to_string(),
        "pending" => "発行処理中".to_string(),
        "failed" => "発行失敗".to_string(),
        other => other.to_string(),
    }
}

pub(super) async fn accounts_search(
    a: Authed,
    State(state): State<Shared>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let q = query
        .as_deref()
        .map(form)
        .and_then(|f| one(&f, "q").map(|q| q.trim().to_string()))
        .unwrap_or_default();
    let searched = query.is_some();
    let text = q.clone();
    let req = page_request(&query.as_deref().map(form).unwrap_or_default());
    let found = if searched {
        with_ca(&state, move |_, ca| {
            ca.store().read(|s| {
                accounts::register::search_page(
                    s,
                    Some(&text).filter(|t| !t.is_empty()).map(|t| t.as_str()),
                    &req,
                )
            })
        })
        .await
    } else {
        Ok(kxca_ca::store::paging::Page {
            items: Vec::new(),
            newer: None,
            older: None,
        })
    };
    let found = match found {
        Ok(f) => f,
        Err(e) => return failure(e),
    };
    let pager = pager("/accounts", &[("q", &q)], &found);
    html(
        StatusCode::OK,
        &Accounts {
            who: a.who(),
            q,
            searched,
            pager,
            accounts: found
                .items
                .into_iter()
                .map(|x| AccountLine {
                    state: state_ja(x.state),
                    serial: x.current_serial.unwrap_or_else(|| "-".to_string()),
                    certificate_id: x.certificate_id,
                    office_code: x.office_code,
                    office_name: x.office_name,
                    contact_name: x.contact_name,
                })
                .collect(),
        },
    )
}

pub(super) async fn account_page(
    a: Authed,
    State(state): State<Shared>,
    Path(cid): Path<String>,
) -> Response {
    let got = with_ca(&state, move |_, ca| {
        ca.store()
            .read(|s| accounts::register::by_certificate_id(s, &cid))
    })
    .await;
    let acc = match got {
        Ok(Some(acc)) => acc,
        Ok(None) => return not_found().await,
        Err(e) => return failure(e),
    };
    let current = acc.current_serial.clone();
    let live = live_ocsp(&state, &acc.certificate_id).await;
    let (pickups, mails) = match with_ca(&state, {
        let cid = acc.certificate_id.clone();
        let to = [acc.email1.clone(), acc.email2.clone()];
        move |_, ca| {
            let now = ca.clock().now();
            ca.store().read(|s| {
                let filter = kxca_ca::enrolment::Filter {
                    state: None,
                    certificate_id: Some(cid),
                    limit: Some(50),
                };
                let pickups = kxca_ca::enrolment::list(s, &filter, now)?;
                let to: Vec<&str> = to.iter().map(String::as_str).collect();
                let mails = kxca_provisioner::outbox::to_recipients(s, &to, 100)?;
                Ok((pickups, mails))
            })
        }
    })
    .await
    {
        Ok(x) => x,
        Err(e) => return failure(e),
    };
    html(
        StatusCode::OK,
        &AccountPage {
            may_act: a.admin.role.may_act(),
            who: a.who(),
            active: acc.state == accounts::register::AccountState::Active,
            state: state_ja(acc.state),
            office: format!(
                "{}-{}-{} {}",
                acc.union_code, acc.branch_code, acc.office_code, acc.office_name
            ),
            contact: format!(
                "{} {}{}",
                acc.contact_code,
                acc.contact_name,
                if acc.sharoushi { "(社労士)" } else { "" }
            ),
            email1: acc.email1,
            email2: if acc.email2.is_empty() {
                "-".to_string()
            } else {
                acc.email2
            },
            approved: format!(
                "{}(申込 {} の {} 行目)",
                jst(acc.created_at),
                acc.application_id,
                acc.application_row
            ),
            revoked: acc.revoked_at.map(|t| {
                format!(
                    "{}(理由: {})",
                    jst(t),
                    acc.revoke_reason
                        .as_deref()
                        .map(super::live::reason_name_ja)
                        .unwrap_or_else(|| "-".to_string())
                )
            }),
            ocsp_note: live.note,
            certificates: acc
                .certificates
                .iter()
                .map(|c| CertLine {
                    ocsp: live
                        .answers
                        .iter()
                        .find(|(serial, _)| serial.eq_ignore_ascii_case(&c.serial))
                        .map(|(_, a)| a.clone())
                        .unwrap_or_else(|| ("-".to_string(), "")),
                    current: current.as_deref() == Some(c.serial.as_str()),
                    serial: c.serial.clone(),
                    state: match &c.revocation_reason {
                        Some(r) => format!(
                            "{}({})",
                            cert_state_ja(&c.state),
                            super::live::reason_name_ja(r)
                        ),
                        None => cert_state_ja(&c.state),
                    },
                    not_before: jst(c.not_before),
                    not_after: jst(c.not_after),
                })
                .collect(),
            certificate_id: acc.certificate_id,
            pickups: pickups.iter().map(pickup_line).collect(),
            mails: mails.iter().map(mail_line).collect(),
            reasons: reason_choices(),
        },
    )
}

pub(super) async fn account_action(
    State(state): State<Shared>,
    Path((cid, action)): Path<(String, String)>,
    Posted { a, form: f }: Posted,
) -> Response {
    if let Some(r) = a.read_only() {
        return r;
    }
    let back = format!("/accounts/{cid}");
    let reason = one(&f, "reason").unwrap_or("").to_string();
    let (title, what) = match action.as_str() {
        "reset" => (
            "再発行の確認",
            vec![
                format!("{cid} の新しい受け取りを開始します。"),
                "新しい証明書が受け取られた時点で、現在の証明書は失効します。".to_string(),
                "担当者へメール1・メール2を送ります。".to_string(),
            ],
        ),
        "resend" => (
            "メール1再送の確認",
            vec![
                format!("{cid} の担当者へ、証明書受け取りの案内(メール1)をもう一度送ります。"),
                "パスワード(メール2)は送りません。新しいコードが必要なときは受け取り期限の延長を使ってください。".to_string(),
            ],
        ),
        "renew" => (
            "受け取り期限延長の確認",
            vec![
                format!("{cid} の受け取りを延長します(ロック・期限切れを解除します)。"),
                "担当者へ新しい受け取りコードをメールで送ります。".to_string(),
            ],
        ),
        "revoke" => {
            let Some((_, label)) = reason_choices().into_iter().find(|(v, _)| *v == reason) else {
                return message(
                    StatusCode::BAD_REQUEST,
                    Some(a.who()),
                    "失効の理由を選んでください",
                    vec!["一覧から失効の理由を選んでください。".to_string()],
                    &back,
                );
            };
            (
                "失効の確認",
                vec![
                    format!("{cid} の証明書を失効します。理由: {label}"),
                    "失効した証明書ではKXサーバにログインできなくなります。".to_string(),
                ],
            )
        }
        _ => return not_found().await,
    };
    if one(&f, "confirm") != Some("yes") {
        let mut fields = Vec::new();
        if action == "revoke" {
            fields.push(("reason".to_string(), reason));
        }
        return html(
            StatusCode::OK,
            &Confirm {
                who: a.who(),
                title: title.to_string(),
                what,
                action: format!("/accounts/{cid}/{action}"),
                fields,
                back,
            },
        );
    }
    let actor = a.actor();
    let id = cid.clone();
    let act = action.clone();
    let out = with_ca(&state, move |c, ca| {
        let setup = Setup::load(ca, c.mail.as_ref())?;
        let now = ca.clock().now();
        match act.as_str() {
            "reset" => {
                accounts::lifecycle::reset(ca.store_mut(), &id, &setup.delivery(), &actor, now)
                    .map(|o| vec![o])
            }
            "resend" => accounts::lifecycle::resend_mail1(
                ca.store_mut(),
                &id,
                &setup.delivery(),
                &actor,
                now,
            )
            .map(|o| vec![o]),
            "renew" => accounts::lifecycle::renew_pickup(
                ca.store_mut(),
                &id,
                &setup.delivery(),
                &actor,
                now,
            )
            .map(|o| vec![o]),
            _ => {
                let reason: kxca_ca::RevocationReason =
                    reason.parse().map_err(|_| Error::InvalidField {
                        field: "reason".to_string(),
                        message: format!("{reason:?}: not a revocation reason"),
                    })?;
                accounts::lifecycle::revoke(
                    ca.store_mut(),
                    &accounts::lifecycle::RevokeTarget::Contact(id),
                    reason,
                    &setup,
                    &actor,
                    now,
                )
            }
        }
    })
    .await;
    match out {
        Ok(out) => {
            let mails: usize = out.iter().map(|o| o.mails_queued).sum();
            let done = match action.as_str() {
                "reset" => "再発行の受け取りを開始しました",
                "renew" => "受け取り期限を延長しました",
                "resend" => "メール1を再送します",
                _ => "失効しました",
            };
            let mut lines = vec![format!(
                "{cid}: {done}。メール{mails}通を送信待ちにしました。"
            )];
            if action == "revoke" {
                lines.push("失効は数秒のうちにCRLとOCSPに反映されます。".to_string());
            }
            message(StatusCode::OK, Some(a.who()), done, lines, &back)
        }
        Err(e) => refused(&a, &e, &back),
    }
}

/// The public role's answers for an account's certificates: (serial,
/// (words, class)) each, and a note for the whole table when there are none.
struct Live {
    answers: Vec<(String, (String, &'static str))>,
    note: Option<String>,
}

/// Asks the public role about each issued or revoked certificate of `cid`,
/// one after another; once it does not answer, the rest are not asked (a
/// hanging public role costs the page one timeout, not one per row).
async fn live_ocsp(state: &Shared, cid: &str) -> Live {
    let Some(public) = state.public.clone() else {
        return Live {
            answers: Vec::new(),
            note: Some(
                "公開側の問い合わせ先が設定されていません([console] public_url)".to_string(),
            ),
        };
    };
    let id = cid.to_string();
    let certs = with_ca(state, move |_, ca| {
        ca.store().read(|s| {
            let mut out = Vec::new();
            for c in kxca_ca::store::certificates::by_certificate_id(s, &id)? {
                // Revoked certificates stay `issued` here (revocation is its
                // own table): they are asked about too.
                if c.state == kxca_ca::CertificateState::Issued {
                    let issuer = kxca_ca::store::authorities::by_id(s, c.authority_id)?;
                    out.push((c.serial, issuer));
                }
            }
            Ok(out)
        })
    })
    .await;
    let certs = match certs {
        Ok(c) => c,
        Err(e) => {
            tracing::error!(error = %e, "reading certificates for the OCSP check failed");
            return Live {
                answers: Vec::new(),
                note: Some("証明書を読み出せませんでした".to_string()),
            };
        }
    };
    let mut live = Live {
        answers: Vec::new(),
        note: None,
    };
    for (serial, issuer) in certs {
        let Ok(bytes) = hex::decode(&serial) else {
            continue;
        };
        match public.ocsp(&issuer, &bytes, now()).await {
            Ok(answer) => live.answers.push((serial, live::status_ja(&answer.status))),
            Err(e) => {
                tracing::warn!(serial = %serial, public = %public.url(), error = %e, "live OCSP check failed");
                let words = live::failure_ja(&e);
                if matches!(e, crate::public::Failure::Unreachable(_)) {
                    live.note = Some(format!(
                        "{words}。OCSPの欄は空です。証明書の状態は台帳のものです(問い合わせ先: {})。",
                        public.url()
                    ));
                    break;
                }
                live.answers
                    .push((serial, (format!("異常: {words}"), "bad")));
            }
        }
    }
    live
}
