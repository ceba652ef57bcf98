"""SNMP network discovery: devices, interfaces, ARP, LLDP neighbours and forwarding tables.

collect (client.py, pysnmp asyncio) -> parse (parse.py, pure) -> build (batch.py) -> push (discovery.push),
run as one scope by scope.py. Nothing here imports ``app`` beyond the shared batch contract.
"""
