import { banner } from "./common.js";

const params = new URLSearchParams(location.search);
if (params.get("error") === "token") banner("That token is not right.");
else if (params.get("expired")) banner("Your session has expired or was ended. Please log in again.", "info");
