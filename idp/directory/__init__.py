"""Active Directory only: connections, lookup, bind, AD error mapping. Knows nothing of SAML."""
