//! A virtual PIV card for kxca's YubiKey tests: Nitrokey's piv-authenticator
//! on a RAM trussed platform, plugged into pcscd through vsmartcard's vpcd.
//!
//! Usage: `virtual-piv [PORT]` — connects to vpcd on 127.0.0.1:PORT
//! (default 35963) and serves APDUs until vpcd closes the connection.
//!
//! The card's RNG has a fixed seed and its keys live in RAM: a test peer,
//! never a place for a real key.

mod apdu;
mod dispatch;
mod transport;

use std::net::TcpStream;

use piv_authenticator::{Authenticator, Options};
use trussed::virt::{self, StoreConfig};

fn main() {
    let port: u16 = std::env::args()
        .nth(1)
        .map(|p| p.parse().expect("PORT must be a number"))
        .unwrap_or(vpicc::DEFAULT_PORT);
    let stream = TcpStream::connect(("127.0.0.1", port))
        .unwrap_or_else(|e| panic!("cannot reach vpcd on 127.0.0.1:{port}: {e}"));
    // Without it every APDU waits for the peer's delayed ACK (~40 ms).
    stream.set_nodelay(true).expect("TCP_NODELAY");
    virt::with_platform(StoreConfig::ram(), |platform| {
        platform.run_client_with_backends(
            "piv",
            dispatch::Dispatch::new(),
            dispatch::BACKENDS,
            |client| {
                let app = Authenticator::new(client, Options::default());
                let mut card = apdu::Card::new(app);
                match transport::serve(stream, &mut card) {
                    Ok(()) => eprintln!("virtual-piv: vpcd closed the connection"),
                    Err(e) => eprintln!("virtual-piv: {e}"),
                }
            },
        )
    });
}
