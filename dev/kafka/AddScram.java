// Adds (or replaces) SCRAM-SHA-256 and SCRAM-SHA-512 credentials of one user through the Admin
// API: what `kafka-configs --alter --add-config SCRAM-...` does, for a broker whose storage was
// formatted before `./dev/testbed up --secure` (a fresh storage gets them at format time,
// `kafka-storage format --add-scram`). Kafka 4.4's ConfigCommand is in kafka-tools 4.4.0, which
// Maven Central does not serve, so dev/testbed runs this file directly:
//   SCRAM_PASSWORD=... java -cp 'BROKER_LIBS/*' AddScram.java BOOTSTRAP USER
import java.util.List;
import java.util.Properties;
import org.apache.kafka.clients.admin.Admin;
import org.apache.kafka.clients.admin.ScramCredentialInfo;
import org.apache.kafka.clients.admin.ScramMechanism;
import org.apache.kafka.clients.admin.UserScramCredentialAlteration;
import org.apache.kafka.clients.admin.UserScramCredentialUpsertion;

public class AddScram {
    public static void main(String[] args) throws Exception {
        String password = System.getenv("SCRAM_PASSWORD");
        if (args.length != 2 || password == null) {
            System.err.println("usage: SCRAM_PASSWORD=... AddScram BOOTSTRAP USER");
            System.exit(2);
        }
        Properties props = new Properties();
        props.put("bootstrap.servers", args[0]);
        try (Admin admin = Admin.create(props)) {
            // One request per mechanism: a request may alter a user only once.
            for (ScramMechanism m : List.of(ScramMechanism.SCRAM_SHA_256, ScramMechanism.SCRAM_SHA_512)) {
                List<UserScramCredentialAlteration> change = List.of(
                    new UserScramCredentialUpsertion(args[1], new ScramCredentialInfo(m, 4096), password));
                admin.alterUserScramCredentials(change).all().get();
            }
        }
        System.out.println("SCRAM-SHA-256/512 credentials set for " + args[1]);
    }
}
