//! Platforms without a process backend: the router sees no processes, so nothing is routed.

use super::Stat;
use std::io;

pub fn stat(_pid: u32) -> io::Result<Stat> {
    Err(io::ErrorKind::Unsupported.into())
}

pub fn owner(_pid: u32) -> io::Result<u32> {
    Err(io::ErrorKind::Unsupported.into())
}

#[derive(Debug)]
pub struct Watch;

impl Watch {
    pub fn new(_pid: u32) -> Option<Watch> {
        None
    }

    pub fn alive(&self) -> bool {
        false
    }
}

pub fn leader(_pid: u32) -> Option<u32> {
    None
}
