"""Private pieces shared by every jaxkit room: typing, argument checks, reductions."""
