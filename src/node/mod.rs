//! Facts about the host a prober runs on, read-only: what the detector needs
//! to name a cause (kernel, SYN schedule, overlay devices, checksum errors).

/// `UdpInCsumErrors` from the text of `/proc/net/snmp`: the receiver-side
/// count of UDP datagrams dropped for a bad checksum.
pub fn udp_in_csum_errors(snmp: &str) -> Option<u64> {
    let mut udp = snmp.lines().filter(|l| l.starts_with("Udp:"));
    let names = udp.next()?;
    let values = udp.next()?;
    let i = names.split_whitespace().position(|n| n == "InCsumErrors")?;
    values.split_whitespace().nth(i)?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_udp_checksum_errors() {
        let snmp = "Ip: Forwarding\nIp: 1\nUdp: InDatagrams NoPorts InErrors OutDatagrams RcvbufErrors SndbufErrors InCsumErrors IgnoredMulti MemErrors\nUdp: 24 0 3 0 0 0 7 0 0\nUdpLite: InDatagrams\nUdpLite: 0\n";
        assert_eq!(udp_in_csum_errors(snmp), Some(7));
        assert_eq!(udp_in_csum_errors("Ip: x\n"), None);
    }
}
