//! The inbox and an application's page: the form as a table with each
//! finding beside its cell, approval and rejection (provisioner's
//! functions), the original file.

use super::*;

pub(super) async fn inbox(
    a: Authed,
    State(state): State<Shared>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    let f = query.as_deref().map(form).unwrap_or_default();
    let req = page_request(&f);
    let page = with_ca(&state, move |_, ca| {
        ca.store().read(|s| {
            let page = applications::page(s, &req)?;
            let progress = page
                .items
                .iter()
                .map(|a| accounts::progress(s, a.id))
                .collect::<Result<Vec<_>, _>>()?;
            Ok((page, progress))
        })
    })
    .await;
    let (mut page, progress) = match page {
        Ok(x) => x,
        Err(e) => return failure(e),
    };
    let pager = pager("/", &[], &page);
    let apps = std::mem::take(&mut page.items)
        .into_iter()
        .zip(progress)
        .map(|(a, (open, decided))| AppLine {
            id: a.id,
            sender: a.sender.unwrap_or_else(|| "(不明)".to_string()),
            received: jst(a.received_at),
            file_name: a.file_name,
            valid: a.rows_valid,
            review: a.rows_review,
            invalid: a.rows_invalid,
            status: match a.status {
                applications::ApplicationStatus::Rejected => "不備のため返送済み".to_string(),
                applications::ApplicationStatus::PendingReview if decided == 0 => {
                    "確認待ち".to_string()
                }
                applications::ApplicationStatus::PendingReview if decided >= open => {
                    "処理済み".to_string()
                }
                applications::ApplicationStatus::PendingReview => {
                    format!("一部処理済み({decided}/{open}行)")
                }
            },
        })
        .collect();
    html(
        StatusCode::OK,
        &Inbox {
            who: a.who(),
            apps,
            pager,
        },
    )
}

/// The key of a column's value in a row's stored fields.
pub(super) fn field_key(f: Field) -> &'static str {
    match f {
        Field::No => "no",
        Field::Centre => "centre",
        Field::ContractUnit => "contract_unit",
        Field::UnionCode => "union_code",
        Field::BranchCode => "branch_code",
        Field::OfficeCode => "office_code",
        Field::ContactCode => "contact_code",
        Field::Email1 => "email1",
        Field::UnionName => "union_name",
        Field::BranchName => "branch_name",
        Field::OfficeName => "office_name",
        Field::ContactName => "contact_name",
        Field::PasswordCa => "password_ca_present",
        Field::PasswordKx => "password_kx_present",
        Field::Email2 => "email2",
    }
}

pub(super) fn row_view(
    policy: &IntakePolicy,
    r: &applications::ApplicationRowRecord,
    decision: Option<&accounts::Decision>,
) -> RowView {
    use kxca_provisioner::forms::RowVerdict;
    let findings: Vec<&serde_json::Value> = r
        .findings
        .as_array()
        .map(|a| a.iter().collect())
        .unwrap_or_default();
    let text = |v: &serde_json::Value, k: &str| {
        v.get(k)
            .and_then(|x| x.as_str())
            .unwrap_or_default()
            .to_string()
    };
    let mut placed = vec![false; findings.len()];
    let cells = Field::ALL
        .iter()
        .map(|f| {
            let title = policy.columns.title(*f);
            let mut class = "";
            let mut messages = Vec::new();
            let mut shown: Option<String> = None;
            for (i, fd) in findings.iter().enumerate() {
                if text(fd, "column") == title {
                    placed[i] = true;
                    messages.push(text(fd, "message_ja"));
                    if text(fd, "severity") == "error" {
                        class = "invalid";
                    } else if class.is_empty() {
                        class = "review";
                    }
                    shown.get_or_insert_with(|| text(fd, "value"));
                }
            }
            let value = match *f {
                Field::No => r.no.clone().unwrap_or_default(),
                Field::PasswordCa | Field::PasswordKx => {
                    match r.fields.get(field_key(*f)).and_then(|v| v.as_bool()) {
                        Some(true) => "入力あり".to_string(),
                        Some(false) => "なし".to_string(),
                        None => String::new(),
                    }
                }
                _ => r
                    .fields
                    .get(field_key(*f))
                    .and_then(|v| v.as_str())
                    .filter(|s| !s.is_empty())
                    .map(str::to_string)
                    .or(shown)
                    .unwrap_or_default(),
            };
            Cell {
                value,
                class,
                messages,
            }
        })
        .collect();
    let messages = findings
        .iter()
        .zip(&placed)
        .filter(|(_, p)| !**p)
        .map(|(f, _)| text(f, "message_ja"))
        .collect();
    let (status, status_class) = match r.status {
        RowVerdict::Valid => ("有効", "valid"),
        RowVerdict::Review => ("要確認", "review"),
        RowVerdict::Invalid => ("不備あり", "invalid"),
    };
    let decision_text = decision.map(|d| match d.decision.as_str() {
        "approved" => format!(
            "承認済み({}、{})",
            d.certificate_id.as_deref().unwrap_or("-"),
            d.actor
        ),
        _ => format!(
            "却下済み(理由: {}、{})",
            d.reason.as_deref().unwrap_or("-"),
            d.actor
        ),
    });
    RowView {
        row: r.row,
        status,
        status_class,
        cells,
        messages,
        may_approve: decision.is_none() && r.status != RowVerdict::Invalid,
        decision: decision_text,
    }
}

pub(super) async fn application(
    a: Authed,
    State(state): State<Shared>,
    Path(id): Path<i64>,
) -> Response {
    let got = with_ca(&state, move |_, ca| {
        ca.store().read(|s| {
            let app = applications::get(s, id)?;
            let decisions = match app {
                Some(_) => accounts::decisions(s, id)?,
                None => Vec::new(),
            };
            Ok((app, decisions))
        })
    })
    .await;
    let (app, decisions) = match got {
        Ok((Some(app), d)) => (app, d),
        Ok((None, _)) => return not_found().await,
        Err(e) => return failure(e),
    };
    let rows: Vec<RowView> = app
        .rows
        .iter()
        .map(|r| row_view(&state.intake, r, decisions.iter().find(|d| d.row == r.row)))
        .collect();
    let open_valid = rows
        .iter()
        .filter(|r| r.decision.is_none() && r.status_class == "valid")
        .count();
    html(
        StatusCode::OK,
        &ApplicationPage {
            may_act: a.admin.role.may_act(),
            who: a.who(),
            id,
            sender: app.sender.unwrap_or_else(|| "(不明)".to_string()),
            received: jst(app.received_at),
            file_name: app.file_name,
            columns: state
                .intake
                .columns
                .titles()
                .iter()
                .map(|t| t.to_string())
                .collect(),
            rows,
            open_valid,
        },
    )
}

pub(super) async fn download(
    a: Authed,
    State(state): State<Shared>,
    Path(id): Path<i64>,
) -> Response {
    let actor = a.actor();
    let got = with_ca(&state, move |_, ca| {
        let file = ca.store().read(|s| applications::file(s, id))?;
        if file.is_some() {
            ca.store_mut().write(|tx| {
                tx.audit(
                    now(),
                    &actor,
                    AuditAction::AdminDownload,
                    None,
                    serde_json::json!({"application": id}),
                )
            })?;
        }
        Ok(file)
    })
    .await;
    match got {
        Ok(Some((name, bytes))) => {
            // RFC 5987: the Japanese file name as UTF-8, an ASCII fallback.
            let encoded: String = form_urlencoded::byte_serialize(name.as_bytes())
                .collect::<String>()
                .replace('+', "%20");
            let disposition = format!(
                "attachment; filename=\"application-{id}.xlsx\"; filename*=UTF-8''{encoded}"
            );
            let mut resp = Response::new(Body::from(bytes));
            let h = resp.headers_mut();
            h.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static(
                    "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
                ),
            );
            if let Ok(v) = HeaderValue::from_str(&disposition) {
                h.insert(header::CONTENT_DISPOSITION, v);
            }
            resp
        }
        Ok(None) => not_found().await,
        Err(e) => failure(e),
    }
}

pub(super) async fn approve(
    State(state): State<Shared>,
    Path(id): Path<i64>,
    Posted { a, form: f }: Posted,
) -> Response {
    if let Some(r) = a.read_only() {
        return r;
    }
    let back = format!("/applications/{id}");
    let selected = one(&f, "scope") == Some("selected");
    let rows: Option<Vec<u32>> = if selected {
        let rows: Result<Vec<u32>, _> = f
            .iter()
            .filter(|(k, _)| k == "rows")
            .map(|(_, v)| v.parse::<u32>())
            .collect();
        match rows {
            Ok(r) if !r.is_empty() => Some(r),
            _ => {
                return message(
                    StatusCode::BAD_REQUEST,
                    Some(a.who()),
                    "行が選ばれていません",
                    vec![
                        "承認する行にチェックを入れてから「選択した行を承認」を押してください。"
                            .to_string(),
                    ],
                    &back,
                )
            }
        }
    } else {
        None
    };
    if one(&f, "confirm") != Some("yes") {
        let what = match &rows {
            Some(r) => vec![format!(
                "申込 {id} の {} 行目を承認し、アカウントを作成します。",
                r.iter().map(u32::to_string).collect::<Vec<_>>().join("、")
            )],
            None => vec![format!(
                "申込 {id} の有効な行をすべて承認し、アカウントを作成します。"
            )],
        };
        let mut what = what;
        what.push("各連絡先へ証明書受け取りの案内メール(メール1・メール2)を送ります。".to_string());
        let mut fields = vec![(
            "scope".to_string(),
            if selected { "selected" } else { "valid" }.to_string(),
        )];
        for r in rows.iter().flatten() {
            fields.push(("rows".to_string(), r.to_string()));
        }
        return html(
            StatusCode::OK,
            &Confirm {
                who: a.who(),
                title: "承認の確認".to_string(),
                what,
                action: format!("/applications/{id}/approve"),
                fields,
                back,
            },
        );
    }
    let actor = a.actor();
    let out = with_ca(&state, move |c, ca| {
        let setup = Setup::load(ca, c.mail.as_ref())?;
        let profile = ca.profiles().get(&c.profile)?.clone();
        let now = ca.clock().now();
        let ctx = accounts::Context {
            profile: &profile,
            intake: &c.intake,
            delivery: setup.delivery(),
        };
        accounts::approve(ca.store_mut(), id, rows.as_deref(), &ctx, &actor, now)
    })
    .await;
    match out {
        Ok(out) => {
            let mut lines = vec![format!(
                "{}行を承認し、メール{}通を送信待ちにしました。",
                out.approved.len(),
                out.mails_queued
            )];
            for r in &out.approved {
                lines.push(format!(
                    "{}行目: 承認(証明書ID {})",
                    r.row,
                    r.certificate_id.as_deref().unwrap_or("-")
                ));
            }
            for r in &out.refused {
                // The English reason stays in the log; the admin reads the
                // rule's Japanese words.
                tracing::info!(
                    application = id,
                    row = r.row,
                    reason = r.reason.as_deref().unwrap_or("-"),
                    "row not approved"
                );
                lines.push(format!(
                    "{}行目: 承認できませんでした({})",
                    r.row,
                    r.kind
                        .map(crate::refusals::row_ja)
                        .unwrap_or("アカウントの決まりにより承認できません。")
                ));
            }
            if !out.already_decided.is_empty() {
                lines.push(format!(
                    "すでに承認または却下されているため、処理しなかった行: {}",
                    out.already_decided
                        .iter()
                        .map(u32::to_string)
                        .collect::<Vec<_>>()
                        .join("、")
                ));
            }
            message(StatusCode::OK, Some(a.who()), "承認しました", lines, &back)
        }
        Err(e) => refused(&a, &e, &back),
    }
}

pub(super) async fn reject(
    State(state): State<Shared>,
    Path(id): Path<i64>,
    Posted { a, form: f }: Posted,
) -> Response {
    if let Some(r) = a.read_only() {
        return r;
    }
    let back = format!("/applications/{id}");
    let row = one(&f, "row").and_then(|r| r.parse::<u32>().ok());
    let reason = one(&f, "reason").unwrap_or("").trim().to_string();
    let Some(row) = row.filter(|_| !reason.is_empty()) else {
        return message(
            StatusCode::BAD_REQUEST,
            Some(a.who()),
            "却下の理由が入力されていません",
            vec!["却下する行の理由欄に、申込者へ伝える理由を入力してください。".to_string()],
            &back,
        );
    };
    if one(&f, "confirm") != Some("yes") {
        return html(
            StatusCode::OK,
            &Confirm {
                who: a.who(),
                title: "却下の確認".to_string(),
                what: vec![
                    format!("申込 {id} の {row} 行目を却下します。"),
                    format!("理由: {reason}"),
                    "申込者へ理由をメールで伝えます。".to_string(),
                ],
                action: format!("/applications/{id}/reject"),
                fields: vec![
                    ("row".to_string(), row.to_string()),
                    ("reason".to_string(), reason),
                ],
                back,
            },
        );
    }
    let actor = a.actor();
    let out = with_ca(&state, move |c, ca| {
        let setup = Setup::load(ca, c.mail.as_ref())?;
        let now = ca.clock().now();
        accounts::reject(ca.store_mut(), id, &[row], &reason, &setup, &actor, now)
    })
    .await;
    match out {
        Ok(out) if out.refused.is_empty() && !out.already_decided.is_empty() => message(
            StatusCode::CONFLICT,
            Some(a.who()),
            "却下できませんでした",
            vec![format!(
                "{row} 行目はすでに承認または却下されているため、却下しませんでした。決定を取り消す場合は、アカウント画面で失効してください。"
            )],
            &back,
        ),
        Ok(out) => message(
            StatusCode::OK,
            Some(a.who()),
            "却下しました",
            vec![format!(
                "{}行を却下し、メール{}通を送信待ちにしました。",
                out.refused.len(),
                out.mails_queued
            )],
            &back,
        ),
        Err(e) => refused(&a, &e, &back),
    }
}
