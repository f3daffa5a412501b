"""What providers report back: Twilio's status callbacks and inbound SMS, and the one-click
unsubscribe of an email."""
