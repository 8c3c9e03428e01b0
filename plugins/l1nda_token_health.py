from l1nda_sync.ui.plugin import L1ndaTokenHealthPlugin as L1ndaTokenHealthPlugin  # the operators' token-health page
