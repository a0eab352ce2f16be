"""Examples of web apps that hand work to Switchboard through `app.client`."""
