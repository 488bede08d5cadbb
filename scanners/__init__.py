"""Protocol probes (one module per protocol, registered as ``cybermission.probes`` entry points),
the pcap importer, the nmap engine, and the loopback lab of simulated devices (``scanners.lab``)."""
