//! Mails parsed per second: kxca's MIME walker (mail-parser + attachment
//! extraction, split-name repair, hashing) against mail-parser alone.
//! `cargo bench -p kxca-provisioner --bench mail`

use std::time::Instant;

use kxca_provisioner::mail::mime::{read, Limits};

fn mail() -> Vec<u8> {
    let form: Vec<u8> = (0..30_000u32).map(|i| (i * 7 % 251) as u8).collect();
    let mut b64 = String::new();
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    for (i, c) in form.chunks(3).enumerate() {
        let n = (c[0] as u32) << 16
            | (*c.get(1).unwrap_or(&0) as u32) << 8
            | *c.get(2).unwrap_or(&0) as u32;
        for k in 0..4 {
            b64.push(T[(n >> (18 - 6 * k) & 63) as usize] as char);
        }
        if i % 19 == 18 {
            b64.push_str("\r\n");
        }
    }
    format!(
        "From: office1@example.jp\r\nSubject: =?ISO-2022-JP?B?GyRCTXhNUT9cOf4bKEI=?=\r\nMessage-ID: <b@x>\r\n\
Content-Type: multipart/mixed; boundary=\"XX\"\r\n\r\n--XX\r\nContent-Type: text/plain\r\n\r\nbody\r\n\
--XX\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment;\r\n filename*0*=UTF-8''%E7%94%B3%E8%AB;\r\n filename*1*=%8B%E6%9B%B8.xlsx\r\n\
Content-Transfer-Encoding: base64\r\n\r\n{b64}\r\n--XX--\r\n"
    )
    .into_bytes()
}

fn main() {
    let raw = mail();
    let n = 5_000;
    let limits = Limits::default();
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(mail_parser::MessageParser::default().parse(&raw));
    }
    let alone = n as f64 / t.elapsed().as_secs_f64();
    let t = Instant::now();
    for _ in 0..n {
        std::hint::black_box(read(&raw, &limits).ok());
    }
    let walker = n as f64 / t.elapsed().as_secs_f64();
    println!(
        "{} byte mail: mail-parser alone {alone:.0}/s, kxca walker {walker:.0}/s, ratio {:.2}",
        raw.len(),
        walker / alone
    );
}
