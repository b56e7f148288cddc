//! The network room: the socket, addresses as users type them, and the driver task that runs
//! the protocol core against real sockets and a real clock.

pub mod addr;
pub mod discovery;
pub mod driver;
pub mod socket;
