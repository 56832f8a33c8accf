"""Every morning in operation (DESIGN §6): population scores, the re-assessment triggers and care
flags of the rule table, and advisor worklists."""
