"""The move from Nmbrs' SOAP API to its REST API (issue 20, docs/migration.md): readiness per link, the cutover at
`soap_end` and its preview. Pure decisions in `readiness` and `cutover`; `world` loads their input from the registry;
`running` carries the cutover out."""
