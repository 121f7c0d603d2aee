//! The officers' view of the key ceremonies: the CAs (root, issuing,
//! retired) with their keys, validity and CRLs, the recorded ceremony runs
//! (`ceremony.run` audit events) and the enrolled officers. Officers only.

use super::*;

pub(super) async fn ceremonies_page(
    a: Authed,
    State(state): State<Shared>,
    axum::extract::RawQuery(query): axum::extract::RawQuery,
) -> Response {
    if a.admin.role != crate::Role::Officer {
        tracing::warn!(admin = %a.admin.name, "ceremony page refused: role {}", a.admin.role.as_str());
        return message(
            StatusCode::FORBIDDEN,
            Some(a.who()),
            "権限がありません",
            vec![format!(
                "鍵の儀式の状況は責任者だけが見られます({}の権限では見られません)。",
                a.admin.role.label_ja()
            )],
            "/",
        );
    }
    let f = query.as_deref().map(form).unwrap_or_default();
    let req = page_request(&f);
    let got = with_ca(&state, move |_, ca| {
        let now = ca.clock().now();
        let officers = kxca_ca::ceremony::officers::enrolled(ca.store())?;
        ca.store().read(|s| {
            let authorities = kxca_ca::store::authorities::all(s)?;
            let states = kxca_ca::ceremony::authority_states(s)?;
            let mut crls = Vec::new();
            for auth in &authorities {
                crls.push(kxca_ca::store::crls::latest(s, auth.id)?);
            }
            let runs = kxca_ca::store::audit::page(
                s,
                &kxca_ca::store::audit::AuditFilter {
                    action_prefix: Some(kxca_ca::AuditAction::CeremonyRun.as_str().to_string()),
                    ..Default::default()
                },
                &req,
            )?;
            Ok((now, authorities, states, crls, runs, officers))
        })
    })
    .await;
    let (now, authorities, states, crls, runs, officers) = match got {
        Ok(x) => x,
        Err(e) => return failure(e),
    };
    let authorities = authorities
        .iter()
        .zip(crls)
        .map(|(auth, crl)| {
            let st = states.get(&auth.id).cloned().unwrap_or_default();
            let state = if let Some(at) = st.retired_at {
                format!(
                    "廃止({}、鍵: {})",
                    jst(at),
                    st.key_disposal.as_deref().unwrap_or("-")
                )
            } else if let Some(at) = st.revoked_at {
                format!("失効({})", jst(at))
            } else if auth.active {
                "使用中".to_string()
            } else if auth.not_after <= now {
                "期限切れ".to_string()
            } else {
                "旧認証局(CRL・OCSPのみ署名)".to_string()
            };
            let crl = match crl {
                _ if st.retired_at.is_some() => "最終CRL発行済み".to_string(),
                Some(c) if c.next_update > now => {
                    format!("正常: 番号 {}、次回更新 {}", c.number, jst(c.next_update))
                }
                Some(c) => format!("異常: 次回更新 {} を過ぎています", jst(c.next_update)),
                None => "未発行".to_string(),
            };
            AuthorityLine {
                name: auth.name.clone(),
                role: match auth.role {
                    kxca_ca::AuthorityRole::Root => "ルート",
                    kxca_ca::AuthorityRole::Issuing => "発行",
                },
                state,
                key: key_words(&auth.key_ref),
                not_before: jst(auth.not_before),
                not_after: jst(auth.not_after),
                crl,
            }
        })
        .collect();
    let pager = pager("/ceremonies", &[], &runs);
    let runs = runs
        .items
        .into_iter()
        .map(|e| {
            let d = &e.detail;
            let text = |k: &str| d.get(k).and_then(|v| v.as_str()).unwrap_or("-").to_string();
            CeremonyLine {
                id: e.id,
                at: jst(e.at),
                kind: text("type"),
                file_sha256: text("file_sha256"),
                officers: d
                    .get("officers")
                    .and_then(|v| v.as_array())
                    .map(|a| {
                        a.iter()
                            .filter_map(|o| o.as_str())
                            .collect::<Vec<_>>()
                            .join("、")
                    })
                    .unwrap_or_default(),
                outcome: match d.get("completed").and_then(|v| v.as_bool()) {
                    Some(true) => "完了",
                    Some(false) => "途中で失敗",
                    None => "-",
                },
            }
        })
        .collect();
    html(
        StatusCode::OK,
        &Ceremonies {
            who: a.who(),
            authorities,
            runs,
            pager,
            officers,
        },
    )
}

/// Where a CA's key lives, in words, with its label.
fn key_words(key_ref: &str) -> String {
    let (backend, rest) = key_ref.split_once(':').unwrap_or(("", key_ref));
    let backend = match backend {
        "soft" => "ソフトウェア鍵(ファイル)",
        "pkcs11" => "HSM(PKCS#11)",
        "yubikey" => "YubiKey",
        _ => "その他",
    };
    // RFC 7512 lets a URI carry pin-value/pin-source: never shown.
    let label: Vec<&str> = rest
        .split([';', '?', '&'])
        .filter(|p| !p.is_empty() && !p.starts_with("pin-"))
        .collect();
    format!("{backend}: {}", label.join(";"))
}
