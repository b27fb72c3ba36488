"""shadow: ranger verdicts, alerts by rollout stage, agreement, guard, drift, gates."""
