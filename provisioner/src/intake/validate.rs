//! The validation rules, each driven by the intake policy.

use std::collections::{BTreeMap, HashMap};

use kxca_ca::rules;
use kxca_ca::CodeName;
use unicode_normalization::UnicodeNormalization;

use super::existing::{ExistingAccounts, ExistingContact};
use super::form::RawRow;
use super::messages::{self, FindingCode};
use super::normalize::{self, Cell, CodeProblem};
use super::policy::{Field, IntakePolicy, PasswordHandling};
use super::report::{ApplicationRow, Finding, RowReport, RowStatus, Severity};

/// Builds findings for one row.
struct Findings<'p> {
    row: u32,
    policy: &'p IntakePolicy,
    list: Vec<Finding>,
}

impl Findings<'_> {
    fn add(&mut self, code: FindingCode, field: Field, value: &str, expected: &str, other: &str) {
        let column = self.policy.columns.title(field);
        self.list.push(Finding {
            code,
            severity: code.severity(),
            column: column.to_string(),
            value: value.to_string(),
            message_ja: messages::render(code.template(), self.row, column, value, expected, other),
        });
    }

    fn code_problem(&mut self, p: CodeProblem, field: Field, value: &str, width: &str) {
        let code = match p {
            CodeProblem::Fraction => FindingCode::CodeFraction,
            CodeProblem::Date => FindingCode::CodeDate,
            CodeProblem::ENotation => FindingCode::CodeENotation,
            CodeProblem::FormulaError => FindingCode::CodeFormulaError,
            CodeProblem::NotDigits => FindingCode::CodeNotDigits,
            CodeProblem::Width => FindingCode::CodeWidth,
        };
        self.add(code, field, value, width, "");
    }
}

/// Compares names as people mean them: NFKC, spaces ignored.
fn name_key(s: &str) -> String {
    s.nfkc()
        .filter(|c| !c.is_whitespace() && *c != '\u{3000}')
        .collect()
}

pub(crate) fn validate(
    raw: &[RawRow],
    policy: &IntakePolicy,
    existing: &dyn ExistingAccounts,
) -> Vec<RowReport> {
    let mut reports: Vec<RowReport> = raw.iter().map(|r| check_row(r, policy, existing)).collect();
    cross_rows(&mut reports, policy, existing);
    for r in &mut reports {
        r.status = RowStatus::of(&r.findings);
    }
    reports
}

fn digit_field(
    f: &mut Findings<'_>,
    raw: &RawRow,
    field: Field,
    width: Option<usize>,
    range: (usize, usize),
    required: bool,
) -> Option<String> {
    let cell = raw.cell(field);
    let original = cell.original();
    let width_text = match width {
        Some(w) => w.to_string(),
        None if range.0 == range.1 => range.0.to_string(),
        None => format!("{}〜{}", range.0, range.1),
    };
    match normalize::digit_code(cell, width, range) {
        Ok(Some(code)) => {
            if code.padded {
                f.add(FindingCode::CodePadded, field, &original, &code.value, "");
            }
            Some(code.value)
        }
        Ok(None) => {
            if required {
                f.add(FindingCode::MissingValue, field, "", "", "");
            }
            None
        }
        Err(p) => {
            f.code_problem(p, field, &original, &width_text);
            None
        }
    }
}

/// A digit code with the widths the shared rules give it (the profile
/// agrees with them, or the policy would not have loaded with it).
fn digits_of(
    f: &mut Findings<'_>,
    raw: &RawRow,
    field: Field,
    code: CodeName,
    required: bool,
) -> Option<String> {
    let rules = &f.policy.rules;
    let (min, max) = rules.digits(code).map_or((1, 1), |(lo, hi, _)| (lo, hi));
    let width = (min == max).then_some(min);
    digit_field(f, raw, field, width, (min, max), required)
}

fn check_row(raw: &RawRow, policy: &IntakePolicy, existing: &dyn ExistingAccounts) -> RowReport {
    let mut f = Findings {
        row: raw.row,
        policy,
        list: Vec::new(),
    };
    let mut out = ApplicationRow {
        password_ca_present: raw.password_ca,
        password_kx_present: raw.password_kx,
        ..Default::default()
    };
    let no = match raw.cell(Field::No) {
        Cell::Empty => None,
        c => Some(normalize::trim(&c.original())).filter(|s| !s.is_empty()),
    };

    // 担当センターコード
    let centre_cell = raw.cell(Field::Centre);
    match normalize::letter_code(centre_cell) {
        Ok(Some(c)) => {
            if !policy.centres.codes.contains(&c) {
                f.add(
                    FindingCode::CentreUnknown,
                    Field::Centre,
                    &centre_cell.original(),
                    &policy.centres.codes.join("、"),
                    "",
                );
            }
            out.centre = c;
        }
        Ok(None) => f.add(FindingCode::MissingValue, Field::Centre, "", "", ""),
        Err(p) => f.code_problem(p, Field::Centre, &centre_cell.original(), ""),
    }

    // 組合コード, 支部コード, 契約単位コード: widths and the contract unit
    // rule as issuance reads them (kxca_ca::rules).
    let union = digits_of(&mut f, raw, Field::UnionCode, CodeName::UnionCode, true);
    if let Some(u) = &union {
        if *u != policy.union.code {
            f.add(
                FindingCode::UnionCodeMismatch,
                Field::UnionCode,
                &raw.cell(Field::UnionCode).original(),
                &policy.union.code,
                "",
            );
        }
        out.union_code = u.clone();
    }
    let branch = digits_of(&mut f, raw, Field::BranchCode, CodeName::BranchCode, true);
    let branch_name_expected = branch.as_ref().and_then(|b| policy.branches.names.get(b));
    if let Some(b) = &branch {
        if branch_name_expected.is_none() {
            f.add(
                FindingCode::BranchUnknown,
                Field::BranchCode,
                &raw.cell(Field::BranchCode).original(),
                "",
                "",
            );
        }
        out.branch_code = b.clone();
    }
    if let Some(cu) = digits_of(
        &mut f,
        raw,
        Field::ContractUnit,
        CodeName::ContractUnit,
        true,
    ) {
        if let (Some(u), Some(b)) = (&union, &branch) {
            let expected = policy.rules.contract_unit.expected(u, b);
            if cu != expected {
                f.add(
                    FindingCode::ContractUnitMismatch,
                    Field::ContractUnit,
                    &raw.cell(Field::ContractUnit).original(),
                    &expected,
                    "",
                );
            }
        }
        out.contract_unit = cu;
    }

    // 組合名, 支部名
    let union_name = normalize::name_text(&normalize::text_of(raw.cell(Field::UnionName)));
    if union_name.is_empty() {
        f.add(FindingCode::MissingValue, Field::UnionName, "", "", "");
    } else if name_key(&union_name) != name_key(&policy.union.name) {
        f.add(
            FindingCode::UnionNameMismatch,
            Field::UnionName,
            &raw.cell(Field::UnionName).original(),
            &policy.union.name,
            "",
        );
    }
    out.union_name = union_name;
    let branch_name = normalize::name_text(&normalize::text_of(raw.cell(Field::BranchName)));
    if branch_name.is_empty() {
        f.add(FindingCode::MissingValue, Field::BranchName, "", "", "");
    } else if let Some(expected) = branch_name_expected {
        if name_key(&branch_name) != name_key(expected) {
            f.add(
                FindingCode::BranchNameMismatch,
                Field::BranchName,
                &raw.cell(Field::BranchName).original(),
                expected,
                "",
            );
        }
    }
    out.branch_name = branch_name;

    // 事業所名 (needed to tell the union's own rows)
    let office_name = normalize::name_text(&normalize::text_of(raw.cell(Field::OfficeName)));
    let contact_name = normalize::name_text(&normalize::text_of(raw.cell(Field::ContactName)));

    // 事業所コード: blank only on the union's own rows.
    let o = &policy.office;
    let office = digits_of(&mut f, raw, Field::OfficeCode, CodeName::OfficeCode, false);
    let office_blank = raw.cell(Field::OfficeCode).is_blank();
    out.own_row = branch
        .as_ref()
        .is_some_and(|b| policy.rules.is_own_row(b, office_blank, &office_name));
    if office_blank && !out.own_row {
        f.add(
            FindingCode::OfficeCodeRequired,
            Field::OfficeCode,
            "",
            "",
            "",
        );
    }
    if let Some(oc) = &office {
        if o.use_register {
            let u = union.as_deref().unwrap_or(&policy.union.code);
            let b = branch.as_deref().unwrap_or("");
            if existing.office_registered(u, b, oc) == Some(false) {
                f.add(
                    FindingCode::OfficeNotRegistered,
                    Field::OfficeCode,
                    &raw.cell(Field::OfficeCode).original(),
                    "",
                    "",
                );
            }
        }
        out.office_code = oc.clone();
    }

    // 担当者用コード
    if let Some(c) = digits_of(&mut f, raw, Field::ContactCode, CodeName::ContactCode, true) {
        out.contact_code = c;
    }

    // 事業所名, 担当者名
    for (field, value) in [
        (Field::OfficeName, &office_name),
        (Field::ContactName, &contact_name),
    ] {
        let original = raw.cell(field).original();
        if value.is_empty() {
            if !(field == Field::OfficeName && out.own_row) {
                f.add(FindingCode::MissingValue, field, "", "", "");
            }
            continue;
        }
        if let Some(p) = rules::name_problem(value, policy.rules.name_max_chars) {
            f.add(
                FindingCode::from(p),
                field,
                &original,
                &policy.rules.name_max_chars.to_string(),
                "",
            );
        }
        if let Some(c) = normalize::first_outside_jis_x0208(value) {
            f.add(
                FindingCode::NameNotJisX0208,
                field,
                &original,
                &c.to_string(),
                "",
            );
        }
    }
    out.office_name = office_name;
    out.contact_name = contact_name;

    // メールアドレス1, 2
    let email1 = email_field(&mut f, raw, Field::Email1, true, policy);
    let email2 = email_field(&mut f, raw, Field::Email2, false, policy);
    if let (Some(a), Some(b)) = (&email1, &email2) {
        if a.eq_ignore_ascii_case(b) {
            f.add(
                FindingCode::Email2SameAsEmail1,
                Field::Email2,
                &raw.cell(Field::Email2).original(),
                "",
                "",
            );
        }
    }
    out.email1 = email1.unwrap_or_default();
    out.email2 = email2.unwrap_or_default();

    // Passwords: the value is gone already; only its presence is known.
    for (field, present) in [
        (Field::PasswordCa, raw.password_ca),
        (Field::PasswordKx, raw.password_kx),
    ] {
        if !present {
            continue;
        }
        match policy.passwords.handling {
            PasswordHandling::Ignore => {}
            PasswordHandling::Warn => f.add(FindingCode::PasswordIgnored, field, "", "", ""),
            PasswordHandling::Reject => f.add(FindingCode::PasswordNotAllowed, field, "", "", ""),
        }
    }

    out.sharoushi = !out.own_row
        && is_sharoushi(
            policy,
            &out.contact_code,
            &out.office_name,
            &out.contact_name,
        );

    RowReport {
        row: raw.row,
        no,
        status: RowStatus::Valid,
        findings: f.list,
        fields: out,
    }
}

pub(crate) fn is_sharoushi(
    policy: &IntakePolicy,
    contact: &str,
    office_name: &str,
    contact_name: &str,
) -> bool {
    let s = &policy.sharoushi;
    let by_code = !contact.is_empty()
        && s.contact_code_ranges.iter().any(|[lo, hi]| {
            contact.len() == lo.len() && contact >= lo.as_str() && contact <= hi.as_str()
        });
    let by_word = s.words.iter().any(|w| {
        !w.is_empty() && (office_name.contains(w.as_str()) || contact_name.contains(w.as_str()))
    });
    by_code || by_word
}

fn email_field(
    f: &mut Findings<'_>,
    raw: &RawRow,
    field: Field,
    required: bool,
    policy: &IntakePolicy,
) -> Option<String> {
    let cell = raw.cell(field);
    let original = cell.original();
    let addr = rules::email_text(&normalize::text_of(cell));
    if addr.is_empty() {
        if required {
            f.add(FindingCode::MissingValue, field, "", "", "");
        }
        return None;
    }
    if let Some(p) = rules::email_problem(&addr) {
        f.add(FindingCode::from(p), field, &original, "", "");
        return None;
    }
    let (_, domain) = addr.rsplit_once('@')?;
    if policy
        .email
        .legacy_carrier_domains
        .iter()
        .any(|d| domain == *d || domain.ends_with(&format!(".{d}")))
    {
        f.add(FindingCode::EmailLegacyCarrier, field, &original, "", "");
    }
    Some(addr)
}

type OfficeKey = (String, String, String);

/// Rules across rows: duplicates, 社労士 with an office contact, one
/// account per office.
fn cross_rows(reports: &mut [RowReport], policy: &IntakePolicy, existing: &dyn ExistingAccounts) {
    let key_ok = |r: &RowReport| {
        let key_fields = [
            Field::UnionCode,
            Field::BranchCode,
            Field::OfficeCode,
            Field::ContactCode,
        ];
        let title = |fl: Field| policy.columns.title(fl);
        !r.findings.iter().any(|f| {
            f.severity == Severity::Error && key_fields.iter().any(|k| f.column == title(*k))
        }) && !r.fields.contact_code.is_empty()
            && !r.fields.union_code.is_empty()
            && !r.fields.branch_code.is_empty()
            && (r.fields.own_row || !r.fields.office_code.is_empty())
    };
    let office_key = |r: &RowReport| -> OfficeKey {
        (
            r.fields.union_code.clone(),
            r.fields.branch_code.clone(),
            r.fields.office_code.clone(),
        )
    };
    let mut cache: HashMap<OfficeKey, Vec<ExistingContact>> = HashMap::new();
    let mut existing_of = |k: &OfficeKey| -> Vec<ExistingContact> {
        cache
            .entry(k.clone())
            .or_insert_with(|| existing.contacts(&k.0, &k.1, &k.2))
            .clone()
    };

    // Duplicates within the form and against existing accounts.
    let mut first_row: HashMap<(OfficeKey, String), u32> = HashMap::new();
    let mut duplicate = vec![false; reports.len()];
    for (i, r) in reports.iter_mut().enumerate() {
        if !key_ok(r) {
            continue;
        }
        let k = office_key(r);
        let contact = r.fields.contact_code.clone();
        let original = r.findings.len();
        let row = r.row;
        let policy_title = policy.columns.title(Field::ContactCode).to_string();
        let mut push = |code: FindingCode, value: &str, expected: &str, other: &str| {
            r.findings.push(Finding {
                code,
                severity: code.severity(),
                column: policy_title.clone(),
                value: value.to_string(),
                message_ja: messages::render(
                    code.template(),
                    row,
                    &policy_title,
                    value,
                    expected,
                    other,
                ),
            });
        };
        if let Some(first) = first_row.get(&(k.clone(), contact.clone())) {
            push(
                FindingCode::DuplicateInForm,
                &contact,
                "",
                &first.to_string(),
            );
        } else {
            first_row.insert((k.clone(), contact.clone()), row);
            if existing_of(&k).iter().any(|c| c.contact_code == contact) {
                let office_shown = if k.2.is_empty() {
                    "（なし）"
                } else {
                    k.2.as_str()
                };
                push(
                    FindingCode::DuplicateExistingAccount,
                    office_shown,
                    &contact,
                    "",
                );
            }
        }
        duplicate[i] = r.findings.len() > original;
    }

    // Offices in the form: which rows, and their contacts.
    let mut offices: BTreeMap<OfficeKey, Vec<usize>> = BTreeMap::new();
    for (i, r) in reports.iter().enumerate() {
        if key_ok(r) && !duplicate[i] && !r.fields.own_row {
            offices.entry(office_key(r)).or_default().push(i);
        }
    }
    for (k, idx) in offices {
        let existing_contacts = existing_of(&k);
        let has_office_contact = idx.iter().any(|i| !reports[*i].fields.sharoushi)
            || existing_contacts.iter().any(|c| !c.sharoushi);
        let mut contacts: Vec<&str> = existing_contacts
            .iter()
            .map(|c| c.contact_code.as_str())
            .collect();
        contacts.extend(idx.iter().map(|i| reports[*i].fields.contact_code.as_str()));
        contacts.sort_unstable();
        contacts.dedup();
        let many = contacts.len() > 1 && !policy.allows_multiple_accounts(&k.0, &k.1, &k.2);
        for i in idx {
            let r = &mut reports[i];
            let title = policy.columns.title(Field::OfficeCode).to_string();
            let mut push = |code: FindingCode, value: &str| {
                r.findings.push(Finding {
                    code,
                    severity: code.severity(),
                    column: title.clone(),
                    value: value.to_string(),
                    message_ja: messages::render(code.template(), r.row, &title, value, "", ""),
                });
            };
            if r.fields.sharoushi && !has_office_contact {
                push(FindingCode::SharoushiWithoutOfficeContact, &k.2);
            }
            if many {
                push(FindingCode::MultipleAccountsPerOffice, &k.2);
            }
        }
    }
}
