//! One gate per domain rule: a table of rows run through both entry points,
//! the intake validator (a one-row form) and `kxca issue`'s holder building
//! (`--from holder.json`), which must agree case by case: a row intake
//! calls valid is issuable, and a row it refuses is refused by issuance.

use kxca_test_support::common;
use kxca_test_support::intake as support_intake;

use common::{assert_ok, TestCa};
use kxca_provisioner::intake::{self, IntakePolicy, NoExistingAccounts, Severity};
use support_intake::{s, standard, TITLES, V};

/// A contact's row as typed; `office: ""` is a blank cell.
#[derive(Clone)]
struct Case {
    what: &'static str,
    centre: &'static str,
    contract_unit: &'static str,
    union_code: &'static str,
    branch_code: &'static str,
    office_code: &'static str,
    contact_code: &'static str,
    email: &'static str,
    office_name: &'static str,
    contact_name: &'static str,
    /// What both entry points must say.
    valid: bool,
}

const BASE: Case = Case {
    what: "",
    centre: "JC",
    contract_unit: "2627600",
    union_code: "26276",
    branch_code: "00",
    office_code: "12345",
    contact_code: "001",
    email: "yamada@example.co.jp",
    office_name: "山田設計株式会社",
    contact_name: "山田 太郎",
    valid: true,
};

fn cases() -> Vec<Case> {
    let ok = |what, f: fn(&mut Case)| {
        let mut c = BASE.clone();
        c.what = what;
        f(&mut c);
        c.valid = true;
        c
    };
    let bad = |what, f: fn(&mut Case)| {
        let mut c = BASE.clone();
        c.what = what;
        f(&mut c);
        c.valid = false;
        c
    };
    vec![
        ok("the baseline row", |_| {}),
        // codes of each width
        ok("office code of 1 digit", |c| c.office_code = "7"),
        ok("office code of 10 digits", |c| c.office_code = "1234567890"),
        bad("office code of 11 digits", |c| {
            c.office_code = "12345678901"
        }),
        bad("office code with a letter", |c| c.office_code = "12a45"),
        bad("contact code of 2 digits", |c| c.contact_code = "01"),
        bad("contact code of 4 digits", |c| c.contact_code = "0001"),
        bad("union code of 4 digits", |c| {
            c.union_code = "2627";
            c.contract_unit = "262700";
        }),
        bad("another union's code", |c| {
            c.union_code = "12345";
            c.contract_unit = "1234500";
        }),
        bad("branch code of 1 digit", |c| {
            c.branch_code = "0";
            c.contract_unit = "262760";
        }),
        bad("a branch not in the policy", |c| {
            c.branch_code = "01";
            c.contract_unit = "2627601";
        }),
        // the contract unit rule
        bad("contract unit not union+branch", |c| {
            c.contract_unit = "2627601"
        }),
        bad("contract unit of 8 digits", |c| {
            c.contract_unit = "26276000"
        }),
        bad("contract unit blank", |c| c.contract_unit = ""),
        // centres
        ok("centre in lower case", |c| c.centre = "jc"),
        bad("centre not in the policy", |c| c.centre = "XX"),
        // full-width and stray characters, as clerks type them
        ok("full-width codes and address", |c| {
            c.centre = "ＪＣ";
            c.contract_unit = "２６２７６００";
            c.union_code = "２６２７６";
            c.branch_code = "００";
            c.office_code = "１２３４５";
            c.contact_code = "００１";
            c.email = "ｙａｍａｄａ＠ｅｘａｍｐｌｅ．ｃｏ．ｊｐ";
        }),
        ok("codes with spaces and a zero-width space", |c| {
            c.office_code = " 12345\u{200B}";
            c.contact_code = "\u{3000}001 ";
        }),
        ok("names with full-width and doubled spaces", |c| {
            c.contact_name = "　山田　　太郎 ";
        }),
        // e-mail
        ok("upper-case domain", |c| c.email = "Yamada@Example.CO.JP"),
        ok("IDN domain in punycode", |c| {
            c.email = "taro@xn--r8jz45g.jp"
        }),
        bad("IDN domain in Unicode", |c| c.email = "taro@例え.jp"),
        bad("non-ASCII local part", |c| c.email = "山田@example.jp"),
        bad("TLD without a letter", |c| c.email = "taro@example.123"),
        bad("domain without a dot", |c| c.email = "taro@localhost"),
        bad("two dots in a row", |c| c.email = "taro..y@example.jp"),
        bad("dot at the start", |c| c.email = ".taro@example.jp"),
        bad("two @", |c| c.email = "taro@@example.jp"),
        bad("label starting with a hyphen", |c| c.email = "taro@-x.jp"),
        bad("no address", |c| c.email = ""),
        // names
        ok("name of 25 characters", |c| {
            c.office_name = "あいうえおかきくけこさしすせそたちつてとなにぬねの"
        }),
        bad("name of 26 characters", |c| {
            c.office_name = "あいうえおかきくけこさしすせそたちつてとなにぬねのは"
        }),
        bad("name with a control character", |c| {
            c.contact_name = "山田\u{7}太郎"
        }),
        bad("contact name blank", |c| c.contact_name = ""),
        // the union's own rows
        ok("own row: blank office code and office name", |c| {
            c.office_code = "";
            c.office_name = "";
            c.email = "kx001@sekkei-kenpo.jp";
        }),
        ok("own row: blank office code, the union's name", |c| {
            c.office_code = "";
            c.office_name = "全国設計事務所健康保険組合";
        }),
        bad("blank office code on an office's row", |c| {
            c.office_code = ""
        }),
    ]
}

fn form_row(c: &Case) -> Vec<V> {
    let cell = |t: &str| if t.is_empty() { V::Blank } else { s(t) };
    let mut r = vec![V::Blank; TITLES.len()];
    r[0] = V::N(1.0);
    r[1] = cell(c.centre);
    r[2] = cell(c.contract_unit);
    r[3] = cell(c.union_code);
    r[4] = cell(c.branch_code);
    r[5] = cell(c.office_code);
    r[6] = cell(c.contact_code);
    r[7] = cell(c.email);
    r[8] = s("全国設計事務所健康保険組合");
    r[9] = s("本部");
    r[10] = cell(c.office_name);
    r[11] = cell(c.contact_name);
    r
}

fn holder_json(c: &Case) -> serde_json::Value {
    serde_json::json!({
        "centre": c.centre,
        "union_code": c.union_code,
        "branch_code": c.branch_code,
        "contract_unit": c.contract_unit,
        "office_code": c.office_code,
        "contact_code": c.contact_code,
        "office_name": c.office_name,
        "contact_name": c.contact_name,
        "email": c.email,
    })
}

#[test]
fn intake_and_issuance_agree_case_by_case() {
    let ca = TestCa::new();
    // The home's policy: the one both entry points read.
    let policy = IntakePolicy::load(&ca.path("policies/intake.toml")).unwrap();
    let mut table = Vec::new();
    let mut wrong = Vec::new();
    for (i, c) in cases().into_iter().enumerate() {
        // Intake: a one-row form, so that no rule across rows is involved.
        let report = intake::check_bytes(
            "case.xlsx",
            &standard(&[form_row(&c)]),
            &policy,
            &NoExistingAccounts,
        )
        .unwrap_or_else(|e| panic!("{}: not read as a form: {e}", c.what));
        assert_eq!(report.rows.len(), 1, "{}", c.what);
        let row = &report.rows[0];
        let errors: Vec<&str> = row
            .findings
            .iter()
            .filter(|f| f.severity == Severity::Error)
            .map(|f| f.code.as_str())
            .collect();
        let intake_ok = errors.is_empty();

        // Issuance: `kxca issue --from`, the real command.
        let file = ca.dir.path().join(format!("case-{i}.json"));
        std::fs::write(&file, holder_json(&c).to_string()).unwrap();
        let out = ca.kxca(&[
            "issue",
            "--json",
            "--key",
            "ecdsa-p256",
            "--from",
            file.to_str().unwrap(),
        ]);
        let issue_ok = out.status.success();
        let stderr = String::from_utf8_lossy(&out.stderr).trim().to_string();

        if issue_ok {
            // What was issued is what intake read: the same normalisation.
            let issued: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
            let serial = issued["serial"].as_str().unwrap();
            let show = ca.kxca(&["show", serial, "--json"]);
            assert_ok(&show, "show");
            let rec: serde_json::Value = serde_json::from_slice(&show.stdout).unwrap();
            let h = &rec["holder"];
            if intake_ok {
                let f = &row.fields;
                for (name, intake_value) in [
                    ("centre", &f.centre),
                    ("contract_unit", &f.contract_unit),
                    ("office_code", &f.office_code),
                    ("contact_code", &f.contact_code),
                    ("office_name", &f.office_name),
                    ("contact_name", &f.contact_name),
                    ("email", &f.email1),
                ] {
                    if h[name].as_str() != Some(intake_value.as_str()) {
                        wrong.push(format!(
                            "{}: {name} issued as {} but read by intake as {intake_value:?}",
                            c.what, h[name]
                        ));
                    }
                }
            }
        }
        table.push(format!(
            "{:<45} intake {:<7} issue {:<7} {}{}",
            c.what,
            if intake_ok { "valid" } else { "invalid" },
            if issue_ok { "issued" } else { "refused" },
            errors.join(","),
            if issue_ok {
                String::new()
            } else {
                format!(" | {stderr}")
            }
        ));
        if intake_ok != issue_ok {
            wrong.push(format!(
                "{}: intake says {}, issuance {} ({stderr})",
                c.what,
                if intake_ok { "valid" } else { "invalid" },
                if issue_ok { "issued it" } else { "refused it" }
            ));
        }
        if intake_ok != c.valid {
            wrong.push(format!(
                "{}: expected {}, intake found {errors:?}",
                c.what,
                if c.valid { "valid" } else { "invalid" }
            ));
        }
    }
    println!("{}", table.join("\n"));
    assert!(wrong.is_empty(), "\n{}", wrong.join("\n"));
}

#[test]
fn a_profile_that_disagrees_with_the_intake_policy_stops_both_entry_points() {
    let ca = TestCa::new();
    let policy = ca.path("policies/intake.toml");
    let text = std::fs::read_to_string(&policy).unwrap();
    let changed = text.replace("max_digits = 10", "max_digits = 9");
    assert_ne!(
        changed, text,
        "the shipped policy no longer sets max_digits = 10"
    );
    std::fs::write(&policy, changed).unwrap();

    let issue = ca.kxca(&common::issue_args("12345", "001"));
    let form = ca.dir.path().join("form.xlsx");
    std::fs::write(&form, standard(&[support_intake::row(1, "12345", "001")])).unwrap();
    let check = ca.kxca(&["intake", "check", form.to_str().unwrap()]);
    for (what, out) in [("kxca issue", &issue), ("kxca intake check", &check)] {
        assert!(
            !out.status.success(),
            "{what} ran with disagreeing policies"
        );
        let err = String::from_utf8_lossy(&out.stderr);
        for part in [
            "policies/intake.toml",
            "[office] min_digits/max_digits",
            "policies/profiles/office-client.toml",
            "[codes] office_code",
        ] {
            assert!(err.contains(part), "{what}: {part:?} missing from: {err}");
        }
    }
}
