"""The Nmbrs REST client: L1NDA's app (`config`), OAuth2 (`oauth`), rotating grants (`grants`), the probe (`client`,
`probe`). No registry access here: grants are stored through the `grants.GrantStore` protocol."""
